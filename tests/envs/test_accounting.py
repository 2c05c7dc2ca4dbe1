"""The declared step accounting: both envs report it, and their dynamics stay pinned.

The digests pin every observation, reward, flag and info value of fixed-seed, fixed-action
rollouts, as they were before the physics env shared the synthetic env's accounting
(issue 16): a refactor of the envs must keep them (the same draws, in the same order). The
physics digest also pins the PyBullet build; after a deliberate change of the dynamics or of
pybullet, re-derive it with :func:`rollout_digest` and say why in the commit.
"""

from __future__ import annotations

import hashlib
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import v2p  # noqa: F401  (registers the ids)
from v2p.envs.accounting import ACCOUNTING_KEYS, StepAccounting, error_rates, read_accounting

SYNTHETIC_DIGEST = "c66e5d1a7e2300f28ce3dd04a814034fbb91514a78580cc0182dc612fca6e695"
# Re-derived for the 21 x 21 calibration table (issue 19): the info's p_err and expected_*
# values changed with it; observations, rewards and counts are those of the earlier digest
# (checked by hashing them alone, before and after).
PHYSICS_DIGEST = "71bedb483c861ae7b87fa11b94f8c9ec8ee40cb062f7e1536afea1adb3a5735a"


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            h.update(key.encode())
            _feed(h, item)
    elif isinstance(value, tuple | list):
        for item in value:
            _feed(h, item)
    elif isinstance(value, np.ndarray) and value.dtype != object:
        h.update(f"{value.dtype.str}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, np.ndarray):  # final_obs: an object array of observations
        _feed(h, list(value))
    else:
        h.update(f"{type(value).__name__}:{value!r}".encode())


def rollout_digest(env_id: str, num_envs: int, n_steps: int, seed: int, **kwargs: Any) -> str:
    """sha256 of a vector env's reset and ``n_steps`` steps at seeded uniform actions."""
    h = hashlib.sha256()
    rng = np.random.default_rng(seed)
    envs = gym.make_vec(env_id, num_envs=num_envs, **kwargs)
    _feed(h, envs.reset(seed=seed))
    for _ in range(n_steps):
        _feed(h, envs.step(rng.uniform(0, 1, (num_envs, 2)).astype(np.float32)))
    envs.close()
    return h.hexdigest()


def test_synthetic_dynamics_are_unchanged():
    # 130 steps: two shifts of 60 steps and their same-step autoresets.
    assert rollout_digest("v2p/Dishwashing-v0", 4, 130, 7) == SYNTHETIC_DIGEST


def test_physics_dynamics_are_unchanged():
    assert rollout_digest("v2p/DishwashingPhysics-v0", 2, 12, 5, steps=5) == PHYSICS_DIGEST


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [("v2p/Dishwashing-v0", {}), ("v2p/DishwashingPhysics-v0", {"frames": 2})],
)
def test_both_envs_report_exactly_the_declared_record(env_id, kwargs):
    envs = gym.make_vec(env_id, num_envs=2, **kwargs)
    envs.reset(seed=0)
    info = envs.step(np.full((2, 2), 0.5, dtype=np.float32))[4]
    envs.close()
    reported = [key for key in info if not key.startswith("_")]
    assert reported[: 1 + len(ACCOUNTING_KEYS)] == ["kind", *ACCOUNTING_KEYS]
    economic, record = read_accounting(info, 2, env_id)
    assert economic.all() and isinstance(record, StepAccounting)
    np.testing.assert_array_equal(record.completed, record.attempts - record.errors)
    np.testing.assert_array_equal(record.err_rate, record.errors / np.maximum(1, record.attempts))


def full_info(n: int) -> dict[str, np.ndarray]:
    return {key: np.ones(n) for key in ACCOUNTING_KEYS}


def test_a_partial_record_raises_naming_the_key_and_the_env():
    info = full_info(3)
    del info["expected_errors"]
    with pytest.raises(KeyError, match=r"env 'v2p/X-v0'.*site 0.*'expected_errors'"):
        read_accounting(info, 3, "env 'v2p/X-v0'")
    info = full_info(3)
    info["_err_rate"] = np.array([True, False, True])  # site 1 lacks it
    with pytest.raises(KeyError, match=r"site 1 .*'err_rate'"):
        error_rates(info, 3, "the env")


def test_a_non_economic_env_has_no_record_and_no_errors():
    economic, record = read_accounting({"final_obs": np.zeros(2)}, 2, "Pendulum-v1")
    assert record is None and not economic.any()
    err = error_rates({}, 2, "Pendulum-v1")
    assert err.dtype == np.float32 and (err == 0).all()


def test_sources_of_which_only_some_are_economic_are_read_site_by_site():
    info: dict[str, Any] = {}
    for key in ACCOUNTING_KEYS:  # as ConcatVectorEnv fills a key some parts lack
        info[key] = np.array([0.25, 0.0])
        info[f"_{key}"] = np.array([True, False])
    economic, _ = read_accounting(info, 2, "the env")
    np.testing.assert_array_equal(economic, [True, False])
    np.testing.assert_array_equal(error_rates(info, 2, "the env"), [0.25, 0.0])
