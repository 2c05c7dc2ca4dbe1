"""Where the physics sites of a vector env step: in this process, or split over workers.

Every physics step renders a camera frame and simulates each dish in PyBullet, about 350 env
steps per CPU second, so one process trains no faster on 16 cores than on 2. With
``workers > 1`` the sites are split into contiguous slices, each stepped by its own process
(``spawn``ed: the training process may hold CUDA or OpenMP state that a fork must not copy).

Both kinds of group have one interface (:class:`LocalSites`), so
:class:`~v2p.envs.physics.env.DishwashingPhysicsVectorEnv` keeps one copy of the vector-env
logic (autoreset, info, final observations). Site ``i`` is reset with seed ``seed + i`` and
keeps its own random generator wherever it runs, so a run is the same, step for step, with any
number of workers, and a checkpoint written with one count resumes with another.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import traceback
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

import numpy as np

from v2p.envs.dynamics import ExpectedOutcome, StepOutcome


class SitesStep(NamedTuple):
    """One step of a group of sites (arrays over its sites)."""

    outcome: StepOutcome
    obs: np.ndarray  # (n, T, 3, H, W): the clips after the step (a new shift's where reset)
    truncated: np.ndarray  # (n,) bool: the shift ended in this step (and was reset)
    final_obs: np.ndarray | None  # (n, T, 3, H, W) the clips before the reset, if any ended


class LocalSites:
    """``num_envs`` physics envs stepped one after the other in this process."""

    def __init__(self, num_envs: int, env_kwargs: dict[str, Any]) -> None:
        from v2p.envs.physics.env import DishwashingPhysicsEnv  # env.py imports this module

        self.envs = [DishwashingPhysicsEnv(**env_kwargs) for _ in range(num_envs)]

    def reset(self, seeds: list[int | None], mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reset the sites in ``mask`` with their seeds; returns (clips, kinds) of all sites."""
        for env, seed, reset in zip(self.envs, seeds, mask, strict=True):
            if reset:
                env.reset(seed=seed)
        return self.observe(), np.array([int(env.sim.kind[0]) for env in self.envs])

    def step(self, actions: np.ndarray) -> SitesStep:
        outcome = concatenate([env.advance(a) for env, a in zip(self.envs, actions, strict=True)])
        truncated = np.array([bool(env.sim.truncated[0]) for env in self.envs])
        final_obs = None
        if truncated.any():
            final_obs = self.observe()
            for env, ended in zip(self.envs, truncated, strict=True):
                if ended:
                    env.reset()
        return SitesStep(outcome, self.observe(), truncated, final_obs)

    def observe(self) -> np.ndarray:
        return np.stack([env.history.clips()[0] for env in self.envs])

    def state_dict(self) -> list[dict[str, Any]]:
        return [env.state_dict() for env in self.envs]

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        for env, state in zip(self.envs, states, strict=True):
            env.load_state_dict(state)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _serve(conn: Connection, num_envs: int, env_kwargs: dict[str, Any]) -> None:
    """A worker's loop: run :class:`LocalSites` methods on request until ``close``."""
    sites = None
    try:
        sites = LocalSites(num_envs, env_kwargs)
        conn.send(("ok", None))
        while True:
            try:
                method, args = conn.recv()
            except EOFError:  # the training process is gone: nothing to answer
                break
            if method == "close":
                break
            try:
                conn.send(("ok", getattr(sites, method)(*args)))
            except Exception:  # the parent raises it, with this traceback
                conn.send(("error", traceback.format_exc()))
    except Exception:
        conn.send(("error", traceback.format_exc()))
    finally:
        if sites is not None:
            sites.close()
        conn.close()


class WorkerSites:
    """The sites split over ``workers`` processes, each a :class:`LocalSites` of a slice."""

    def __init__(self, num_envs: int, env_kwargs: dict[str, Any], workers: int) -> None:
        if not 1 < workers <= num_envs:
            raise ValueError(
                f"workers must be between 2 and num_envs ({num_envs}) to split the sites, got "
                f"{workers!r}"
            )
        bounds = np.linspace(0, num_envs, workers + 1).round().astype(int)
        self.slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        context = mp.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs = []
        for part in self.slices:
            parent, child = context.Pipe()
            proc = context.Process(
                target=_serve, args=(child, part.stop - part.start, env_kwargs), daemon=True
            )
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        try:
            self._gather("__init__")  # each worker answers once its envs are built
        except RuntimeError:
            self.close()  # the workers that did start
            raise

    def _call(self, method: str, per_worker_args: list[tuple]) -> list[Any]:
        for conn, args in zip(self._conns, per_worker_args, strict=True):
            conn.send((method, args))
        return self._gather(method)

    def _gather(self, method: str) -> list[Any]:
        results = []
        for index, conn in enumerate(self._conns):
            try:
                status, value = conn.recv()
            except EOFError:
                raise RuntimeError(
                    f"physics worker {index} died during {method}() "
                    f"(exit code {self._procs[index].exitcode})"
                ) from None
            if status == "error":
                raise RuntimeError(f"physics worker {index} failed in {method}():\n{value}")
            results.append(value)
        return results

    def reset(self, seeds: list[int | None], mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = self._call("reset", [(seeds[s], mask[s]) for s in self.slices])
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def step(self, actions: np.ndarray) -> SitesStep:
        parts: list[SitesStep] = self._call("step", [(actions[s],) for s in self.slices])
        final_obs = None
        if any(p.final_obs is not None for p in parts):
            final_obs = np.concatenate(
                [p.obs if p.final_obs is None else p.final_obs for p in parts]
            )
        return SitesStep(
            concatenate([p.outcome for p in parts]),
            np.concatenate([p.obs for p in parts]),
            np.concatenate([p.truncated for p in parts]),
            final_obs,
        )

    def state_dict(self) -> list[dict[str, Any]]:
        parts = self._call("state_dict", [()] * len(self.slices))
        return [state for part in parts for state in part]

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        self._call("load_state_dict", [(states[s],) for s in self.slices])

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(("close", ()))
            except (BrokenPipeError, OSError):
                pass  # already gone
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []


def concatenate(outcomes: list[StepOutcome]) -> StepOutcome:
    """Stack per-site outcomes into one."""
    fields = {
        name: np.concatenate([getattr(o, name) for o in outcomes])
        for name in StepOutcome._fields
        if name != "expected"
    }
    expected = ExpectedOutcome(
        *(
            np.concatenate([getattr(o.expected, n) for o in outcomes])
            for n in ExpectedOutcome._fields
        )
    )
    return StepOutcome(**fields, expected=expected)
