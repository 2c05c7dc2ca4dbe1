"""The PyBullet scene: a counter with a sink, a rack per dish kind, and one dish in play.

Bodies are built once per scene with ``createCollisionShape`` / ``createVisualShape``; every
attempt starts from one saved canonical state (``saveState`` once, ``restoreState`` many
times: calling ``saveState`` repeatedly keeps every snapshot in memory, bullet3 issue 3248,
and ``resetSimulation`` plus rebuilding leaks collision shapes, bullet3 issue 3319). Starting
each attempt from the same snapshot also clears contact caches, so an attempt depends only on
its inputs and the random draws: the same seed gives the same shift.

Each scene owns one ``BulletClient`` in ``p.DIRECT`` mode, so several envs live in one process.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pybullet as p
from pybullet_utils import bullet_client

from v2p.envs.physics.kinds import (
    KIND_PHYSICS,
    KindPhysics,
    MotionModel,
    alignment_spread,
    approach_velocity,
    slips,
    transport_acceleration,
)

TIME_STEP = 1.0 / 240.0  # s, PyBullet's default; contact forces are impulses over this step
MAX_SETTLE_STEPS = 72  # 0.3 s: long enough for any release in this scene to come to rest
RELEASE_GAP = 0.002  # m between the dish and the surface below it when the gripper lets go
SINK_XY = (-0.3, 0.0)
RACK_XY = (0.3, 0.0)
BIN_XY = (0.05, -0.28)
PARK = (0.0, 0.0, -5.0)  # out of sight below the counter, far from everything
RACK_FLOOR = 0.01  # m, top of the rack's base plate
TRAY_SLOTS = ((-0.08, -0.1), (0.08, -0.1), (0.0, 0.1))  # dishes waiting in the sink
SHARD_SLOTS = 12
PROGRESS_TILES = 12
IDENTITY = (0.0, 0.0, 0.0, 1.0)


class EpisodeDraw(NamedTuple):
    """Per-episode domain randomisation, drawn from the env's ``np_random``."""

    mass: np.ndarray  # (K,) kg
    friction: np.ndarray  # (K,) dry friction coefficient
    strength: np.ndarray  # (K,) N
    rack_offset: np.ndarray  # (2,) m, where the rack stands this shift
    tray_offset: np.ndarray  # (K, 3, 2) m, start positions of the dishes in the sink
    camera_eye: np.ndarray  # (3,) m
    camera_target: np.ndarray  # (3,) m
    light_direction: np.ndarray  # (3,)
    light_colour: np.ndarray  # (3,) in [0, 1]


CAMERA_EYE = np.array([0.0, -0.72, 0.78])
CAMERA_TARGET = np.array([0.0, 0.02, 0.0])


def draw_episode(rng: np.random.Generator) -> EpisodeDraw:
    """One shift's randomisation. The draw order is fixed, so a seed fixes the shift."""
    k = len(KIND_PHYSICS)
    nominal = np.array([[kp.mass, kp.friction, kp.strength] for kp in KIND_PHYSICS])  # (K, 3)
    scale = rng.uniform([0.85, 0.8, 0.85], [1.15, 1.2, 1.15], size=(k, 3))
    light = rng.uniform([-1.0, -1.0, 0.6], [1.0, 1.0, 1.5])
    return EpisodeDraw(
        mass=nominal[:, 0] * scale[:, 0],
        friction=nominal[:, 1] * scale[:, 1],
        strength=nominal[:, 2] * scale[:, 2],
        rack_offset=rng.uniform(-0.02, 0.02, size=2),
        tray_offset=rng.uniform(-0.015, 0.015, size=(k, len(TRAY_SLOTS), 2)),
        camera_eye=CAMERA_EYE + rng.uniform(-0.02, 0.02, size=3),
        camera_target=CAMERA_TARGET + rng.uniform(-0.01, 0.01, size=3),
        light_direction=light / np.linalg.norm(light),
        light_colour=rng.uniform(0.8, 1.0, size=3),
    )


class AttemptResult(NamedTuple):
    """What happened to one dish."""

    broken: bool  # the summed contact normal force exceeded its strength (rack or sink)
    slipped: bool  # it slid out of the gripper during the carry and fell into the sink
    misaligned: bool  # it came to rest out of its slot (on a wall, tipped over)
    peak_force: float  # N, largest summed normal force on the dish over the attempt

    @property
    def error(self) -> bool:
        return self.broken or self.misaligned


class Scene:
    """One PyBullet world with every body the task needs, built once."""

    def __init__(self, motion: MotionModel | None = None) -> None:
        self.motion = motion or MotionModel()
        self.client = bullet_client.BulletClient(connection_mode=p.DIRECT)
        c = self.client
        c.setGravity(0.0, 0.0, -9.81)
        c.setTimeStep(TIME_STEP)
        # Same broadphase pair order on every run: PyBullet's recipe for deterministic replays.
        c.setPhysicsEngineParameter(deterministicOverlappingPairs=1)
        self._build_static()
        self.dishes = [self._dynamic_dish(kp) for kp in KIND_PHYSICS]
        self.racks = [self._rack(kp) for kp in KIND_PHYSICS]
        self.tray = [[self._visual_dish(kp) for _ in TRAY_SLOTS] for kp in KIND_PHYSICS]
        self.shards = [
            self._visual_box((0.012, 0.008, 0.004), (0.85, 0.12, 0.1, 1))
            for _ in range(SHARD_SLOTS)
        ]
        self.tiles = [
            self._visual_box((0.022, 0.012, 0.003), (0.95, 0.78, 0.15, 1))
            for _ in range(PROGRESS_TILES)
        ]
        self.gripper = self._visual_box((0.03, 0.05, 0.02), (0.25, 0.25, 0.28, 1))
        c.resetBasePositionAndOrientation(self.gripper, (SINK_XY[0], SINK_XY[1], 0.3), IDENTITY)
        self._canonical = c.saveState()  # the one snapshot; see the module docstring
        self._camera = None

    # ------------------------------------------------------------------ building

    def _box(self, half, rgba, pos, collide: bool = True) -> int:
        c = self.client
        col = c.createCollisionShape(p.GEOM_BOX, halfExtents=half) if collide else -1
        vis = c.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=rgba)
        return c.createMultiBody(0.0, col, vis, basePosition=pos)

    def _visual_box(self, half, rgba) -> int:
        return self._box(half, rgba, PARK, collide=False)

    def _build_static(self) -> None:
        self._box((0.6, 0.42, 0.02), (0.78, 0.76, 0.72, 1), (0.0, 0.0, -0.02))  # counter
        # The sink: a dark basin inset in the counter (its floor is the counter's top).
        self._box((0.17, 0.2, 0.001), (0.22, 0.27, 0.33, 1), (*SINK_XY, 0.001), collide=False)
        self._box((0.06, 0.05, 0.01), (0.3, 0.3, 0.32, 1), (*BIN_XY, 0.01), collide=False)

    def _dynamic_dish(self, kp: KindPhysics) -> int:
        c = self.client
        col = c.createCollisionShape(p.GEOM_CYLINDER, radius=kp.radius, height=kp.height)
        vis = c.createVisualShape(
            p.GEOM_CYLINDER, radius=kp.radius, length=kp.height, rgbaColor=kp.colour
        )
        body = c.createMultiBody(kp.mass, col, vis, basePosition=PARK)
        c.changeDynamics(body, -1, lateralFriction=kp.friction, restitution=0.05)
        return body

    def _visual_dish(self, kp: KindPhysics) -> int:
        c = self.client
        vis = c.createVisualShape(
            p.GEOM_CYLINDER, radius=kp.radius, length=kp.height, rgbaColor=kp.colour
        )
        return c.createMultiBody(0.0, -1, vis, basePosition=PARK)

    def _rack(self, kp: KindPhysics) -> int:
        """A base plate and a square well around the centre slot; the well fits ``kp`` with
        ``kp.clearance`` to spare on each side. Racks differ in shape (and so in look)."""
        c = self.client
        inner = kp.radius + kp.clearance
        t = 0.006  # wall half-thickness
        half_h = kp.wall_height / 2
        half_walls = [(inner + 2 * t, t, half_h)] * 2 + [(t, inner, half_h)] * 2
        z = RACK_FLOOR + kp.wall_height / 2
        wall_pos = [(0, inner + t, z), (0, -inner - t, z), (inner + t, 0, z), (-inner - t, 0, z)]
        base = (inner + 0.04, inner + 0.04, RACK_FLOOR / 2)
        halves = [base, *half_walls]
        positions = [(0, 0, RACK_FLOOR / 2), *wall_pos]
        col = c.createCollisionShapeArray(
            [p.GEOM_BOX] * 5, halfExtents=halves, collisionFramePositions=positions
        )
        rack_rgba = (0.55, 0.58, 0.62, 1)
        vis = c.createVisualShapeArray(
            [p.GEOM_BOX] * 5,
            halfExtents=halves,
            visualFramePositions=positions,
            rgbaColors=[rack_rgba] * 5,
        )
        body = c.createMultiBody(0.0, col, vis, basePosition=PARK)
        c.changeDynamics(body, -1, lateralFriction=0.5, restitution=0.05)
        return body

    # ------------------------------------------------------------------ one attempt

    def _stage(self, kind: int, ep: EpisodeDraw) -> tuple[float, float]:
        """Back to the snapshot, with rack ``kind`` in place; returns the slot centre (x, y)."""
        c = self.client
        c.restoreState(self._canonical)
        x, y = RACK_XY[0] + ep.rack_offset[0], RACK_XY[1] + ep.rack_offset[1]
        c.resetBasePositionAndOrientation(self.racks[kind], (x, y, 0.0), IDENTITY)
        return x, y

    def attempt(
        self, kind: int, speed: float, care: float, ep: EpisodeDraw, rng: np.random.Generator
    ) -> AttemptResult:
        """Carry one dish of ``kind`` from the sink to its rack slot at ``(speed, care)``."""
        kp, motion, c = KIND_PHYSICS[kind], self.motion, self.client
        sx, sy = self._stage(kind, ep)
        dish = self.dishes[kind]
        mass, friction = float(ep.mass[kind]), float(ep.friction[kind])
        c.changeDynamics(dish, -1, mass=mass, lateralFriction=friction)
        strength = float(ep.strength[kind]) * rng.uniform(0.85, 1.15)  # dish-to-dish spread
        # Fixed number of draws per attempt whatever happens, so outcomes do not shift the
        # random stream of later attempts.
        wet, dx, dy, tilt, axis_angle = (
            rng.uniform(*motion.wet_friction),
            *rng.standard_normal(3),
            rng.uniform(0.0, 2.0 * np.pi),
        )
        carry_speed = 0.3 + 0.7 * speed  # m/s, only sets the sideways velocity of a slip

        slipped = slips(kp, mass, friction, transport_acceleration(motion, speed), wet)
        if slipped:
            pos = (SINK_XY[0] + 0.1, SINK_XY[1], motion.drop_height + kp.height / 2)
            c.resetBasePositionAndOrientation(dish, pos, IDENTITY)
            c.resetBaseVelocity(dish, (carry_speed, 0.0, 0.0), (0.0, 0.0, 0.0))
            peak = self._settle(dish)
            if peak > strength:
                return AttemptResult(True, True, False, peak)
            # Unbroken: the arm picks it up again (re-grasp time is not charged) and places it.
            self._stage(kind, ep)
            c.changeDynamics(dish, -1, mass=mass, lateralFriction=friction)
        else:
            peak = 0.0

        offset_sd, tilt_sd = alignment_spread(motion, speed, care)
        dx, dy, tilt = dx * offset_sd, dy * offset_sd, tilt * tilt_sd
        # The gripper lowers the dish until something is under it: the slot floor when the
        # dish is over the well, the top of a wall when the offset puts it over one.
        in_well = max(abs(dx), abs(dy)) <= kp.clearance
        floor = RACK_FLOOR if in_well else RACK_FLOOR + kp.wall_height
        # A tilted cylinder's lowest point drops by r * sin(tilt); release it that much higher.
        z = floor + RELEASE_GAP + kp.height / 2 + kp.radius * abs(np.sin(tilt))
        orn = c.getQuaternionFromAxisAngle((np.cos(axis_angle), np.sin(axis_angle), 0.0), tilt)
        c.resetBasePositionAndOrientation(dish, (sx + dx, sy + dy, z), orn)
        c.resetBaseVelocity(dish, (0.0, 0.0, -approach_velocity(motion, speed, care)), (0, 0, 0))
        peak_place = self._settle(dish)
        if peak_place > strength:
            return AttemptResult(True, slipped, False, max(peak, peak_place))
        pos, orn = c.getBasePositionAndOrientation(dish)
        up = c.getMatrixFromQuaternion(orn)[8]  # z component of the dish's axis
        off_slot = max(abs(pos[0] - sx), abs(pos[1] - sy)) > kp.clearance + 1e-3
        raised = pos[2] > RACK_FLOOR + kp.height / 2 + 0.004
        misaligned = off_slot or raised or up < np.cos(0.15)
        return AttemptResult(False, slipped, bool(misaligned), max(peak, peak_place))

    def _settle(self, dish: int) -> float:
        """Step until the dish rests; the peak summed contact normal force on it [N]."""
        c = self.client
        peak = 0.0
        touched = 0
        for _ in range(MAX_SETTLE_STEPS):
            c.stepSimulation()
            contacts = c.getContactPoints(bodyA=dish)
            if contacts:
                # Field 9 is the normal force of the contact over the last step [N].
                peak = max(peak, sum(pt[9] for pt in contacts))
                touched += 1
                if touched > 8:
                    lin, ang = c.getBaseVelocity(dish)
                    if np.dot(lin, lin) < 1e-4 and np.dot(ang, ang) < 1e-2:
                        break
        return peak

    # ------------------------------------------------------------------ pictures

    def render(
        self,
        kind: int,
        progress: float,
        errors: int,
        ep: EpisodeDraw,
        width: int,
        height: int,
    ) -> np.ndarray:
        """A camera frame (3, H, W) uint8 with the rack and sink dishes of the next ``kind``,
        the shift's progress as lit tiles and its broken dishes as shards in the bin."""
        c = self.client
        self._stage(kind, ep)
        for k, bodies in enumerate(self.tray):
            for (tx, ty), body, off in zip(TRAY_SLOTS, bodies, ep.tray_offset[k], strict=True):
                pos = PARK
                if k == kind:
                    z = KIND_PHYSICS[k].height / 2
                    pos = (SINK_XY[0] + tx + off[0], SINK_XY[1] + ty + off[1], z)
                c.resetBasePositionAndOrientation(body, pos, IDENTITY)
        lit = round(progress * PROGRESS_TILES)
        for i, tile in enumerate(self.tiles):
            pos = (-0.5 + i * 0.05 + 0.0, 0.36, 0.003) if i < lit else PARK
            c.resetBasePositionAndOrientation(tile, pos, IDENTITY)
        for i, shard in enumerate(self.shards):
            pos = (BIN_XY[0] - 0.045 + (i % 4) * 0.03, BIN_XY[1] - 0.03 + (i // 4) * 0.03, 0.024)
            c.resetBasePositionAndOrientation(shard, pos if i < errors else PARK, IDENTITY)
        view = c.computeViewMatrix(ep.camera_eye, ep.camera_target, (0.0, 0.0, 1.0))
        proj = c.computeProjectionMatrixFOV(55.0, width / height, 0.05, 3.0)
        _, _, rgba, _, _ = c.getCameraImage(
            width,
            height,
            view,
            proj,
            lightDirection=ep.light_direction.tolist(),
            lightColor=ep.light_colour.tolist(),
            shadow=0,
            renderer=p.ER_TINY_RENDERER,
            flags=p.ER_NO_SEGMENTATION_MASK,
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[:, :, :3]
        return np.ascontiguousarray(rgb.transpose(2, 0, 1))

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client = None
