"""Model arguments given on resume are honoured or refused, never silently dropped (22.5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models.test_sac_runs import REPO, SHORT_SHIFTS, SHRUNK
from v2p.cli import RESUMABLE_MODEL_ARGS, main

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")


def fit(root: Path, max_steps: int, *more: str):
    args = ["fit", f"--config={REPO / 'configs' / 'dishwashing_state.yaml'}", *SHRUNK]
    args += [SHORT_SHIFTS, f"--trainer.default_root_dir={root}", f"--trainer.max_steps={max_steps}"]
    return main([*args, *more])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("first")
    fit(root, 20)
    return next(root.rglob("last.ckpt"))


def test_learning_rates_given_on_resume_are_the_ones_that_train(tmp_path, checkpoint):
    cli = fit(
        tmp_path,
        30,
        f"--ckpt_path={checkpoint}",
        "--model.init_args.actor_lr=1e-5",
        "--model.init_args.critic_lr=2e-5",
        "--model.init_args.gamma=0.5",
    )
    hp = cli.model.hparams
    assert (hp.actor_lr, hp.critic_lr, hp.gamma) == (1e-5, 2e-5, 0.5)
    assert hp.hidden_dim == 32  # the checkpoint's shapes
    rates = [group["lr"] for group in cli.model.optimizers().param_groups]
    assert rates[:2] == [2e-5, 1e-5]  # the restored Adam state did not bring the old ones back
    assert cli.trainer.global_step == 30


def test_a_resumed_run_can_start_averaging_its_policy(tmp_path, checkpoint):
    cli = fit(
        tmp_path, 30, f"--ckpt_path={checkpoint}", "--model.init_args.policy_average_decay=0.99"
    )
    average = cli.model.policy_average
    assert average is not None and average.decay == 0.99
    assert average.average.n_averaged.item() == 10  # the updates since the checkpoint's 20


def test_arguments_that_cannot_change_on_resume_are_refused_by_name(tmp_path, checkpoint):
    with pytest.raises(ValueError, match=r"hidden_dim \(checkpoint 32, given 64\)") as error:
        fit(tmp_path, 30, f"--ckpt_path={checkpoint}", "--model.init_args.hidden_dim=64")
    assert "actor_lr" in str(error.value)  # says what can change
    assert "hidden_dim" not in RESUMABLE_MODEL_ARGS


def test_a_corrupt_checkpoint_given_to_the_cli_is_named(tmp_path, checkpoint):
    corrupt = tmp_path / "cut.ckpt"
    corrupt.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"cut\.ckpt' is corrupt or not a V2P checkpoint"):
        fit(tmp_path, 30, f"--ckpt_path={corrupt}")


def test_a_changed_settings_object_on_resume_is_refused_not_silently_replaced(tmp_path):
    """The attribution settings are one argument of nested fields: a changed field is compared
    (it used to be flattened to "attribution.lr", matched no saved name, and lost)."""
    config = f"--config={REPO / 'configs' / 'dishwashing_sources.yaml'}"
    args = ["fit", config, *(a for a in SHRUNK if "num_envs" not in a)]
    main([*args, f"--trainer.default_root_dir={tmp_path / 'first'}", "--trainer.max_steps=10"])
    checkpoint = next((tmp_path / "first").rglob("last.ckpt"))
    resume = [
        *args,
        f"--trainer.default_root_dir={tmp_path / 'second'}",
        f"--ckpt_path={checkpoint}",
    ]
    with pytest.raises(ValueError, match=r"attribution \(checkpoint .*'lr': 0\.001.*'lr': 0\.0005"):
        main([*resume, "--trainer.max_steps=20", "--model.init_args.attribution.lr=0.0005"])
    cli = main([*resume, "--trainer.max_steps=20"])  # unchanged: resumes
    assert cli.trainer.global_step == 20
