"""Dishwashing envs and their registration with gymnasium (``import v2p`` registers them)."""

from __future__ import annotations

import gymnasium

from v2p.envs.dishwashing import (
    DishwashingEnv,
    DishwashingVectorEnv,
    DishwashingVideoEnv,
    DishwashingVideoVectorEnv,
)
from v2p.envs.dynamics import ExpectedOutcome, attempt_rate, error_probability, expected_outcome
from v2p.envs.optimal import MixOutcome, OptimalPolicy, mix_outcome, optimal_policy
from v2p.envs.params import DEFAULT_DISH_MIX, DISH_KINDS, KIND_NAMES, DishKind, DishwashingParams

__all__ = [
    "DEFAULT_DISH_MIX",
    "DISH_KINDS",
    "KIND_NAMES",
    "DishKind",
    "DishwashingEnv",
    "DishwashingParams",
    "DishwashingVectorEnv",
    "DishwashingVideoEnv",
    "DishwashingVideoVectorEnv",
    "ExpectedOutcome",
    "MixOutcome",
    "OptimalPolicy",
    "attempt_rate",
    "error_probability",
    "expected_outcome",
    "mix_outcome",
    "optimal_policy",
    "register_envs",
]

ENV_IDS = {
    "v2p/Dishwashing-v0": ("DishwashingEnv", "DishwashingVectorEnv"),
    "v2p/DishwashingVideo-v0": ("DishwashingVideoEnv", "DishwashingVideoVectorEnv"),
}
PHYSICS_ENV_ID = "v2p/DishwashingPhysics-v0"


def register_envs() -> None:
    """Register the V2P ids with gymnasium; safe to call more than once."""
    for env_id, (single, vector) in ENV_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(
                id=env_id,
                entry_point=f"v2p.envs.dishwashing:{single}",
                vector_entry_point=f"v2p.envs.dishwashing:{vector}",
            )
    # PyBullet physics (issue 6): entry points as strings, so pybullet is imported only when
    # the id is made.
    if PHYSICS_ENV_ID not in gymnasium.registry:
        gymnasium.register(
            id=PHYSICS_ENV_ID,
            entry_point="v2p.envs.physics.env:DishwashingPhysicsEnv",
            vector_entry_point="v2p.envs.physics.env:DishwashingPhysicsVectorEnv",
        )


register_envs()
