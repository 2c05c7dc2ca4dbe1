"""Physical dish kinds and the arm's motion model: how ``(speed, care)`` becomes a placement.

The kinds are the three of ECONOMICS.md section 2 (:data:`v2p.envs.params.DISH_KINDS`), here
with a shape, colour, mass and strength. What the arm does with an action:

- transport: the peak acceleration grows with ``speed`` only (care shapes the final approach,
  not the carry), so a wet dish can slip out of the pads at high speed whatever the care;
- final approach: the dish is released just above its rack slot moving down at an approach
  velocity that rises with speed and falls with care (a slower final approach, lower impact);
- alignment: the release point misses the slot centre by a Gaussian offset and tilt whose
  spread rises with speed and falls with care.

Everything after the release (impact, contact forces, where the dish comes to rest) is left
to PyBullet.
"""

from __future__ import annotations

from typing import NamedTuple

from v2p.envs.params import KIND_NAMES

GRAVITY = 9.81  # m/s^2


class KindPhysics(NamedTuple):
    """One dish kind as a rigid cylinder and the rack slot it goes into (SI units)."""

    name: str
    radius: float  # m
    height: float  # m
    mass: float  # kg, before randomisation
    strength: float  # N: the summed contact normal force that breaks it, before randomisation
    friction: float  # dry friction coefficient of the dish surface, before randomisation
    grip_force: float  # N per pad: how hard the gripper squeezes this kind
    clearance: float  # m between the dish and the slot walls on each side
    wall_height: float  # m, slot walls
    colour: tuple[float, float, float, float]  # RGBA of the dish


# Order matches KIND_NAMES. Glasses are light, tall (they tip when misplaced) and weak; pots
# are heavy, wide and strong; plates sit in between. Grip forces are what a gentle gripper
# would use: pots need a firm grip for their weight, glasses a light one not to crush them.
KIND_PHYSICS: tuple[KindPhysics, ...] = (
    KindPhysics("plate", 0.11, 0.018, 0.45, 75.0, 0.55, 5.5, 0.012, 0.03, (0.93, 0.91, 0.82, 1)),
    KindPhysics("glass", 0.035, 0.12, 0.25, 28.0, 0.45, 4.0, 0.008, 0.06, (0.45, 0.78, 0.96, 1)),
    KindPhysics("pot", 0.12, 0.10, 1.5, 480.0, 0.6, 14.0, 0.03, 0.05, (0.62, 0.33, 0.12, 1)),
)
assert tuple(k.name for k in KIND_PHYSICS) == KIND_NAMES, "kind order must match KIND_NAMES"


class MotionModel(NamedTuple):
    """Constants of the arm's motion: what ``(speed, care)`` does to one placement."""

    accel_max: float = 9.0  # m/s^2 peak transport acceleration at full speed
    approach_max: float = 1.4  # m/s final approach velocity at full speed and no care
    care_slowdown: float = 0.9  # fraction of the approach velocity full care removes
    offset_max: float = 0.012  # m standard deviation of the release offset, full speed, no care
    tilt_max: float = 0.12  # rad standard deviation of the release tilt, full speed, no care
    care_alignment: float = 0.8  # fraction of the offset and tilt spread full care removes
    wet_friction: tuple[float, float] = (0.35, 1.0)  # water film: friction factor range
    drop_height: float = 0.12  # m a slipped dish falls into the sink


def transport_acceleration(motion: MotionModel, speed: float) -> float:
    """Peak acceleration of the carry [m/s^2]: a faster move accelerates harder (quadratic in
    the move's speed, as a trapezoidal profile over a fixed distance in a shorter time)."""
    return motion.accel_max * (0.25 + 0.75 * speed) ** 2


def approach_velocity(motion: MotionModel, speed: float, care: float) -> float:
    """Downward velocity of the dish at release [m/s]."""
    return motion.approach_max * (0.3 + 0.7 * speed) * (1.0 - motion.care_slowdown * care)


def alignment_spread(motion: MotionModel, speed: float, care: float) -> tuple[float, float]:
    """Standard deviations of the release offset [m] and tilt [rad]."""
    scale = (0.2 + 0.8 * speed) * (1.0 - motion.care_alignment * care)
    return motion.offset_max * scale, motion.tilt_max * scale


def slips(kind: KindPhysics, mass: float, friction: float, accel: float, wet_factor: float) -> bool:
    """Coulomb check of the carry: the dish sits on the fingers, squeezed by two pads, and
    slides off when the inertial force ``m * a`` of the carry exceeds the friction that its
    weight and the pad force can hold, ``mu * wet * (m * g + 2 * F_grip)``."""
    hold = friction * wet_factor * (mass * GRAVITY + 2.0 * kind.grip_force)
    return mass * accel > hold
