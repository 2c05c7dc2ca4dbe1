"""Data sources: several groups of sites with their own task parameters in one data module."""

from __future__ import annotations

import numpy as np
import pytest

from tests.models.conftest import make_run
from v2p.data.rollout import RolloutDataModule, make_vector_env
from v2p.data.sources import ConcatVectorEnv, DataSource

SOURCES = [
    DataSource("platform", num_envs=2),
    DataSource("customer_a", num_envs=1, env_kwargs={"price_per_unit": 0.9}),
]


def test_concat_vector_env_steps_parts_side_by_side():
    parts = [
        make_vector_env("v2p/Dishwashing-v0", 2, {}),
        make_vector_env("v2p/Dishwashing-v0", 1, {"price_per_unit": 0.9}),
    ]
    envs = ConcatVectorEnv(parts)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (3, 7) and envs.num_envs == 3
    for _ in range(60):  # one whole shift: every site truncates on the last step
        obs, _, terminated, truncated, info = envs.step(np.full((3, 2), 0.5, np.float32))
    assert truncated.all() and not terminated.any()
    assert info["final_obs"].shape == (3, 7) and info["_final_obs"].all()
    np.testing.assert_allclose(info["price_per_unit"][2], 0.9)
    assert info["price_per_unit"][0] != pytest.approx(0.9)
    # state_dict round trip: a copy continues identically.
    state = envs.state_dict()
    a = envs.step(np.full((3, 2), 0.3, np.float32))
    envs.load_state_dict(state)
    b = envs.step(np.full((3, 2), 0.3, np.float32))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_info_keys_missing_from_one_part_are_masked():
    envs = ConcatVectorEnv(
        [make_vector_env("v2p/Dishwashing-v0", 1, {}), make_vector_env("v2p/Dishwashing-v0", 2)]
    )
    merged = envs._concat_infos([{"a": np.array([1.0]), "_a": np.array([True])}, {}])
    np.testing.assert_array_equal(merged["a"], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(merged["_a"], [True, False, False])


def test_transitions_and_shifts_carry_their_source(tmp_path):
    model, dm, trainer = make_run(
        tmp_path,
        data_kwargs={"sources": SOURCES, "eval_episodes": 1, "updates_per_epoch": 40},
        max_steps=40,
    )
    trainer.fit(model, dm)
    assert dm.num_envs == 3 and dm.source_names == ["platform", "customer_a"]
    stored = dm.buffer._source[: len(dm.buffer) // dm.num_envs]
    np.testing.assert_array_equal(stored, np.broadcast_to([0, 0, 1], stored.shape))
    metrics = trainer.callback_metrics
    assert {"val/mpl", "val/mpl/platform", "val/mpl/customer_a"} <= set(metrics)
    # Evaluation ran one episode per source; their MPLs average to the overall one.
    overall = (metrics["val/mpl/platform"] + metrics["val/mpl/customer_a"]) / 2
    assert float(metrics["val/mpl"]) == pytest.approx(float(overall), rel=1e-5)
    assert dm.hparams["sources"][1]["env_kwargs"] == {"price_per_unit": 0.9}


def test_bad_sources_are_named():
    with pytest.raises(ValueError, match="repeated: \\['a'\\]"):
        RolloutDataModule(sources=[DataSource("a"), DataSource("a")])
    with pytest.raises(ValueError, match="at least one"):
        RolloutDataModule(sources=[])
    with pytest.raises(ValueError, match="num_envs of source 'b'"):
        DataSource("b", num_envs=0)
    with pytest.raises(ValueError, match="bad env_kwargs"):
        RolloutDataModule(sources=[DataSource("a", env_kwargs={"no_such_parameter": 1})])
    with pytest.raises(ValueError, match=r"source 'small'.*every source must share"):
        RolloutDataModule(
            "v2p/DishwashingVideo-v0",
            sources=[DataSource("a"), DataSource("small", env_kwargs={"height": 32})],
        )


def test_gymnasium_vector_envs_account_the_last_step_of_a_shift():
    """Without a native vector env, gymnasium reports the last step under final_info."""
    import gymnasium as gym

    from v2p.envs.params import DishwashingParams

    if "tests/DishwashingNoVector-v0" not in gym.registry:
        gym.register("tests/DishwashingNoVector-v0", entry_point="v2p.envs:DishwashingEnv")
    dm = RolloutDataModule("tests/DishwashingNoVector-v0", num_envs=2, warmup_steps=256)
    dm.setup("fit")
    finals = []
    step = dm.envs.step

    def keep_final(actions):
        result = step(actions)
        if "final_info" in result[4]:
            finals.append(result[4]["final_info"]["task_state"])
        return result

    dm.envs.step = keep_final
    for _ in range(60):
        dm.collect(random_actions=True)
    records = dm._pending_episodes
    assert len(records) == 2 and len(finals) == 1
    p = DishwashingParams()
    count_scale = p.base_rate * (p.step_seconds / 60.0) * p.steps
    for record in records:
        completed = finals[0][record.env_index][4] * count_scale  # the shift's total
        assert record.shift.completed == round(float(completed))
        assert record.shift.hours == pytest.approx(1.0)
