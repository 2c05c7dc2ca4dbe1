"""Leave-one-source-out heads (v2p/models/attribution.py): what they train on, what they
measure, and that the policy they sit beside trains exactly as without them."""

from __future__ import annotations

import math

import pytest
import torch

from tests.models.conftest import make_run
from v2p.contracts import EpisodeRecord, EvalBatch
from v2p.data.sources import DataSource
from v2p.economics.shift import ShiftCounts
from v2p.models.attribution import AttributionSettings, CounterfactualHeads, expected_site_mpl
from v2p.models.ensemble import EnsembleLinear, ensemble_mlp
from v2p.models.sac import SACModule


def heads(num_sources: int = 3, seed: int = 0, **settings) -> CounterfactualHeads:
    return CounterfactualHeads(
        num_sources,
        input_dim=5,
        action_low=torch.tensor([0.0, 0.0]),
        action_high=torch.tensor([1.0, 1.0]),
        settings=AttributionSettings(hidden_dim=8, **settings),
        gamma=0.9,
        tau=0.01,
        init_alpha=0.1,
        target_entropy=-2.0,
        seed=seed,
    )


def batch(n: int = 12, num_sources: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return dict(
        x=torch.randn(n, 5, generator=g),
        action=torch.rand(n, 2, generator=g),
        reward=torch.randn(n, generator=g),
        x_next=torch.randn(n, 5, generator=g),
        terminated=torch.zeros(n),
        source=torch.arange(n) % num_sources,
    )


def critic_gradients(model: CounterfactualHeads, data: dict) -> list[torch.Tensor]:
    model.zero_grad()
    model._generator.manual_seed(7)  # the same policy noise for both calls
    model.losses(**data).backward()
    return [p.grad.clone() for p in model.critic.parameters()]


def test_each_head_learns_from_the_sources_it_includes_only():
    model, data = heads(), batch()
    before = critic_gradients(model, data)
    data["reward"] = torch.where(data["source"] == 1, data["reward"] + 100.0, data["reward"])
    after = critic_gradients(model, data)
    for b, a in zip(before, after, strict=True):  # each (2H, ...): [Q1 of every head; Q2 ...]
        for h in range(model.heads):
            rows = [h, h + model.heads]
            # Only head 2 (= 1 + source 1) left source 1 out: only its gradients stay put.
            assert torch.equal(b[rows], a[rows]) == (h == 2), h


def test_heads_start_equal_and_the_contributions_are_with_minus_without():
    model = heads()
    x = torch.randn(4, 5)
    actions = [model.act(x, h) for h in range(model.heads)]
    assert all(torch.equal(actions[0], a) for a in actions[1:])  # the same starting weights

    site_mpl = [[10.0, 20.0, 30.0], [9.0, 20.0, 30.0], [10.0, 15.0, 30.0], [10.0, 20.0, 31.0]]

    def run_episodes(act):
        head = calls.pop(0)
        episodes = tuple(EpisodeRecord(k, k, 60, 0.0, _shift(site_mpl[head][k])) for k in range(3))
        return EvalBatch(episodes, 500, ("platform", "a", "b"))

    calls = list(range(model.heads))
    evaluation = model.evaluate(run_episodes, torch.as_tensor, global_step=40)
    assert evaluation.contributions == pytest.approx([1.0, 5.0, -1.0])
    assert evaluation.env_steps == 500 and model.contributions == pytest.approx([1.0, 5.0, -1.0])


def _shift(expected_mpl: float) -> ShiftCounts:
    return ShiftCounts(
        hours=1.0, attempts=0, errors=0, completed=0, price_per_unit=0.6, damage_cost=0.1,
        energy_cost=0.0, human_mp=60.0, expected_profit=0.0,
        expected_attempts=expected_mpl + 2.0, expected_errors=2.0,
    )  # fmt: skip


def test_expected_site_mpl_needs_economics_and_leaves_unseen_sources_nan():
    episodes = (EpisodeRecord(0, 0, 60, 0.0, _shift(12.0)),)
    assert expected_site_mpl(EvalBatch(episodes, 0), 1) == [12.0]
    mpl = expected_site_mpl(EvalBatch(episodes, 0), 2)
    assert mpl[0] == 12.0 and math.isnan(mpl[1])
    with pytest.raises(ValueError, match="must report economics"):
        expected_site_mpl(EvalBatch((EpisodeRecord(0, 0, 5, 0.0, None),), 0), 1)


def test_a_masked_ensemble_head_is_the_model_trained_without_the_left_out_source():
    """Linear regression, three sources (the third's targets are corrupted): the ensemble's
    leave-one-out heads rank the sources as exact leave-one-out retraining does, and agree
    with it number for number."""
    g = torch.Generator().manual_seed(0)
    w_true = torch.tensor([[1.0], [-2.0], [0.5]])
    x = torch.randn(300, 3, generator=g)
    y = x @ w_true + 0.1 * torch.randn(300, 1, generator=g)
    source = torch.arange(300) % 3
    y[source == 2] = 5.0 * torch.randn(int((source == 2).sum()), 1, generator=g)  # corrupted
    x_val = torch.randn(200, 3, generator=g)
    y_val = x_val @ w_true  # what the platform observes itself: clean
    include = torch.ones(4, 3)
    include[1:].fill_diagonal_(0.0)

    def fit(mask_of_head: torch.Tensor, heads: int) -> torch.nn.Module:
        torch.manual_seed(0)
        model = EnsembleLinear(heads, 3, 1)
        optimiser = torch.optim.Adam(model.parameters(), lr=0.1)
        for _ in range(150):
            optimiser.zero_grad()
            error = (model(x.expand(heads, -1, -1)) - y).squeeze(-1).square()  # (H, N)
            mask = mask_of_head[:, source]
            ((error * mask).sum(1) / mask.sum(1)).sum().backward()
            optimiser.step()
        return model

    def validation_loss(model, head):
        return float(
            (model(x_val.expand(model.weight.shape[0], -1, -1))[head] - y_val).square().mean()
        )

    ensemble = fit(include, 4)
    ensemble_value = [
        validation_loss(ensemble, 1 + k) - validation_loss(ensemble, 0) for k in range(3)
    ]
    exact_value = []
    full = validation_loss(fit(include[:1], 1), 0)
    for k in range(3):
        exact_value.append(validation_loss(fit(include[1 + k : 2 + k], 1), 0) - full)
    assert ensemble_value == pytest.approx(exact_value, rel=1e-4, abs=1e-6)
    # Leaving out a clean source costs little (the other covers it); leaving out the
    # corrupted one helps: its value is negative.
    assert exact_value[2] < 0 < min(exact_value[:2])
    order = sorted(range(3), key=lambda k: ensemble_value[k])
    assert order == sorted(range(3), key=lambda k: exact_value[k])


def test_twin_critics_differ_and_heads_of_a_twin_start_equal():
    model = heads()
    for layer in (m for m in model.critic if isinstance(m, EnsembleLinear)):
        q1, q2 = layer.weight[: model.heads], layer.weight[model.heads :]
        assert all(torch.equal(q1[0], w) for w in q1) and all(torch.equal(q2[0], w) for w in q2)
        assert not torch.equal(q1[0], q2[0])
    with pytest.raises(ValueError, match=r"multiple of groups"):
        EnsembleLinear(3, 2, 2, groups=2)


def test_ensemble_mlp_heads_are_independent_models():
    torch.manual_seed(0)
    net = ensemble_mlp(3, 4, 2, hidden_dim=8, hidden_layers=2)
    x = torch.randn(3, 5, 4)
    out = net(x)
    assert out.shape == (3, 5, 2)
    with torch.no_grad():
        net[0].weight[1].add_(1.0)  # change head 1 only
    changed = net(x)
    assert torch.equal(out[0], changed[0]) and torch.equal(out[2], changed[2])
    assert not torch.equal(out[1], changed[1])


def test_attribution_settings_are_checked_by_name():
    with pytest.raises(ValueError, match=r"attribution\.inputs"):
        AttributionSettings(inputs="pixels")
    with pytest.raises(ValueError, match=r"attribution\.batch"):
        AttributionSettings(batch=0)
    with pytest.raises(ValueError, match=r"unknown settings \['width'\]"):
        AttributionSettings.of({"width": 3})
    assert AttributionSettings.of({"hidden_dim": 4}) == AttributionSettings(hidden_dim=4)


TWO_SOURCES = [DataSource("platform", 1), DataSource("customer", 1, {"dish_mix": {"pot": 1.0}})]


def fit_without_and_with(root, attribution: dict) -> tuple[SACModule, SACModule]:
    """The same seeded 40-update run on TWO_SOURCES, without and with ``attribution``."""
    runs = []
    for settings in (None, attribution):
        model, dm, trainer = make_run(
            root / str(settings is None),
            max_steps=40,
            data_kwargs={"sources": TWO_SOURCES},
            model_kwargs={"source_names": ["platform", "customer"], "attribution": settings},
        )
        trainer.fit(model, dm)
        runs.append(model)
    return runs[0], runs[1]


def test_sac_with_attribution_trains_the_policy_exactly_as_without(tmp_path):
    plain, attributed = fit_without_and_with(tmp_path, {"hidden_dim": 8})
    for name, tensor in plain.actor.state_dict().items():
        assert torch.equal(tensor, attributed.actor.state_dict()[name]), name
    assert len(attributed.attribution.evaluations) == 2  # updates_per_epoch 20
    assert attributed.hparams.attribution == AttributionSettings(hidden_dim=8).as_dict()


def test_sac_attribution_needs_sources_and_flat_observations():
    with pytest.raises(ValueError, match="the data has one source"):
        make_run("unused", model_kwargs={"attribution": {}})
    with pytest.raises(ValueError, match="inputs=observation needs flat observations"):
        SACModule(
            (2, 3, 32, 32),
            [0.0, 0.0],
            [1.0, 1.0],
            encoder_arch="simple3dcnn",
            source_names=["platform", "customer"],
            attribution={},
        )


@pytest.mark.parametrize(
    "attribution",
    [{"hidden_dim": 8}, {"method": "gradient", "every": 2}],
    ids=["heads", "gradient"],
)
def test_resume_with_attribution_retraces_the_uninterrupted_run(tmp_path, attribution):
    """The attribution's state (heads and their generator, or the gradient method's open
    window and baseline), its evaluations and the customers' credit all come back: N updates
    resumed for M more == N + M in one run, ledger and attribution.csv included."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from v2p.callbacks import EconomicsCallback

    def run(root, max_steps, callbacks=()):
        economics = EconomicsCallback(update_every=3)
        model, dm, trainer = make_run(
            root,
            env_kwargs={"steps": 10},
            max_steps=max_steps,
            callbacks=[economics, *callbacks],
            data_kwargs={"sources": TWO_SOURCES},
            model_kwargs={"source_names": ["platform", "customer"], "attribution": attribution},
        )
        return economics, model, dm, trainer

    economics_a, model_a, dm_a, trainer_a = run(tmp_path / "a", 60)
    trainer_a.fit(model_a, dm_a)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=30, save_top_k=-1)
    _, model_b, dm_b, trainer_b = run(tmp_path / "b", 30, callbacks=[checkpoint])
    trainer_b.fit(model_b, dm_b)
    economics_c, model_c, dm_c, trainer_c = run(tmp_path / "c", 60)
    trainer_c.fit(model_c, dm_c, ckpt_path=str(tmp_path / "ckpt" / "epoch=1-step=30.ckpt"))

    assert model_c.attribution.evaluations == model_a.attribution.evaluations
    assert len(model_a.attribution.evaluations) == 3
    for name, tensor in model_a.attribution.state_dict().items():
        if isinstance(tensor, torch.Tensor):
            assert torch.equal(tensor, model_c.attribution.state_dict()[name]), name
    for economics in (economics_a, economics_c):
        assert economics.ledger_path.with_name("attribution.csv").exists()
    table = [
        e.ledger_path.with_name("attribution.csv").read_text() for e in (economics_a, economics_c)
    ]
    assert table[0] == table[1]
    assert economics_c.ledger_path.read_text() == economics_a.ledger_path.read_text()
