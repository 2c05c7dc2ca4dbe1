"""The learning benchmarks' env-step budgets: updates start after the warm-up."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.learn import STATE_CONFIG, VIDEO_CONFIG, demo_arms, env_step_budget  # noqa: E402


def test_a_budget_counts_the_warm_up_env_steps():
    # State: 1,000 warm-up env steps, then 4 envs and 4 updates per batched step.
    assert env_step_budget(STATE_CONFIG, 20_000, eval_every=1_000) == [
        "--trainer.max_steps=19000",
        "--data.init_args.updates_per_epoch=1000",
    ]
    # Video: 2,000 warm-up env steps, then 16 envs and 2 updates per batched step; the
    # config's own max_steps (6,000) is its 50,000 env steps.
    assert env_step_budget(VIDEO_CONFIG, 50_000) == ["--trainer.max_steps=6000"]


def test_a_budget_with_more_updates_per_env_step_ends_at_the_same_env_step():
    # Video after a warm-up of 64: 16 envs and 16 updates per batched step, one an env step.
    assert env_step_budget(VIDEO_CONFIG, 12_064, 1_000, 64, 16) == [
        "--trainer.max_steps=12000",
        "--data.init_args.warmup_steps=64",
        "--data.init_args.updates_per_step=16",
        "--data.init_args.updates_per_epoch=1000",
    ]


def test_a_budget_within_the_warm_up_is_refused():
    with pytest.raises(ValueError, match="1000 warm-up env steps"):
        env_step_budget(STATE_CONFIG, 1_000)


def test_the_demonstration_benchmark_runs_an_arm_per_dataset():
    folders = {"optimal": Path("/data/optimal"), "random": Path("/data/random")}
    video = demo_arms(folders, VIDEO_CONFIG)
    assert list(video) == [
        "no demonstrations",
        "optimal demonstrations, demo_share 0.5",
        "random demonstrations, demo_share 0.5",
    ]
    assert video["random demonstrations, demo_share 0.5"] == [
        '--data.init_args.demonstrations=[{"name": "random", "path": "/data/random"}]'
    ]
    state = demo_arms({"optimal": folders["optimal"]}, STATE_CONFIG, skip_baseline=True)
    assert "no demonstrations" not in state and len(state) == 3  # and the LayerNorm arms


def test_demo_only_overrides_reach_the_arms_with_demonstrations_and_their_names():
    folders = {"optimal": Path("/data/optimal")}
    unit = "--model.init_args.unit_head_inputs=true"
    arms = demo_arms(folders, VIDEO_CONFIG, demo_overrides=[unit])
    assert arms == {
        "no demonstrations": [],
        f"optimal demonstrations, demo_share 0.5 {unit}": [
            '--data.init_args.demonstrations=[{"name": "optimal", "path": "/data/optimal"}]',
            unit,
        ],
    }
