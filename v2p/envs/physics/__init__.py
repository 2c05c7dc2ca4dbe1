"""``v2p/DishwashingPhysics-v0``: the dishwashing job simulated in PyBullet (issue 6).

Modules: :mod:`.kinds` (dish kinds and the arm's motion model), :mod:`.scene` (the PyBullet
world and one placement), :mod:`.calibration` (the offline-measured error table),
:mod:`.env` (the gymnasium envs).
"""

from v2p.envs.physics.env import (
    DishwashingPhysicsEnv,
    DishwashingPhysicsVectorEnv,
    physics_expected_outcome,
)

__all__ = ["DishwashingPhysicsEnv", "DishwashingPhysicsVectorEnv", "physics_expected_outcome"]
