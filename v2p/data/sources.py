"""Data sources: the platform's own sites and customer sites, stepped as one vector env.

A source is a named group of envs with its own task parameters (ECONOMICS.md section 7: every
transition carries its source). :class:`ConcatVectorEnv` steps one vector env per source and
concatenates their results, so the data module and the replay see a single batch of
``sum(num_envs)`` sites and keep a per-site source id. Gymnasium has no vector env over
differently configured sub-envs of native batched implementations; ``SyncVectorEnv`` would step
the sites one by one and lose the batched dishwashing env and its ``state_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from v2p.validation import check_int


@dataclass
class DataSource:
    """A group of sites whose data one party owns.

    Args:
        name: the source's name in the ledger and the logs (``platform``, ``customer_a``, ...).
        num_envs: sites of this source stepped per collection step.
        env_kwargs: task parameters of these sites, on top of the data module's ``env_kwargs``.
        env_id: another gymnasium id for these sites (same spaces), e.g. a customer's own
            simulator; None uses the data module's ``env_id``.
    """

    name: str
    num_envs: int = 1
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    env_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a data source needs a non-empty name, got {self.name!r}")
        check_int(f"num_envs of source {self.name!r}", self.num_envs, ge=1)
        self.env_kwargs = dict(self.env_kwargs or {})


def check_sources(sources: list[DataSource]) -> list[DataSource]:
    if not sources:
        raise ValueError("sources must name at least one data source")
    sources = [s if isinstance(s, DataSource) else DataSource(**s) for s in sources]
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"data source names must be unique; repeated: {duplicates}")
    return sources


class ConcatVectorEnv(VectorEnv):
    """Vector envs side by side as one: sites ``[0, n_0)`` are env 0's, and so on.

    Every part must autoreset in the same-step mode and share observation and action spaces.
    ``info`` arrays are concatenated key by key; a key some parts lack is filled with zeros and
    masked out (``_key`` False) on their sites, as gymnasium's vector infos do.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}  # noqa: RUF012 (gymnasium's API)

    def __init__(self, parts: list[VectorEnv]) -> None:
        first = parts[0]
        for i, part in enumerate(parts):
            if part.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
                raise ValueError(f"source env {i} does not autoreset in SAME_STEP mode")
            if part.single_observation_space != first.single_observation_space:
                raise ValueError(
                    f"source env {i} observes {part.single_observation_space}, env 0 "
                    f"{first.single_observation_space}: sources must share one observation space"
                )
            if part.single_action_space != first.single_action_space:
                raise ValueError(
                    f"source env {i} acts in {part.single_action_space}, env 0 in "
                    f"{first.single_action_space}: sources must share one action space"
                )
        self.parts = parts
        self.sizes = [part.num_envs for part in parts]
        self._bounds = np.cumsum([0, *self.sizes])
        self.num_envs = int(self._bounds[-1])
        self.single_observation_space = first.single_observation_space
        self.single_action_space = first.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        seeds = (
            [None] * len(self.parts)
            if seed is None
            else np.random.SeedSequence(seed).generate_state(len(self.parts)).tolist()
        )
        results = [
            part.reset(seed=s, options=options) for part, s in zip(self.parts, seeds, strict=True)
        ]
        obs = np.concatenate([r[0] for r in results])
        return obs, self._concat_infos([r[1] for r in results])

    def step(self, actions: np.ndarray):
        actions = np.asarray(actions)
        results = [
            part.step(actions[lo:hi])
            for part, lo, hi in zip(self.parts, self._bounds[:-1], self._bounds[1:], strict=True)
        ]
        obs, reward, terminated, truncated = (
            np.concatenate([r[k] for r in results]) for k in range(4)
        )
        return obs, reward, terminated, truncated, self._concat_infos([r[4] for r in results])

    def _concat_infos(self, infos: list[dict[str, Any]]) -> dict[str, Any]:
        keys = [k for k in dict.fromkeys(k for info in infos for k in info) if k[0] != "_"]
        merged: dict[str, Any] = {}
        for key in keys:
            values, masks = [], []
            for info, n in zip(infos, self.sizes, strict=True):
                if key in info:
                    values.append(np.asarray(info[key]))
                    masks.append(np.asarray(info.get(f"_{key}", np.ones(n, dtype=bool))))
                else:
                    values.append(None)
                    masks.append(np.zeros(n, dtype=bool))
            template = next(v for v in values if v is not None)
            filled = [
                v if v is not None else np.zeros((n, *template.shape[1:]), dtype=template.dtype)
                for v, n in zip(values, self.sizes, strict=True)
            ]
            merged[key] = np.concatenate(filled)
            merged[f"_{key}"] = np.concatenate(masks)
        return merged

    def state_dict(self) -> list[Any]:
        return [part.state_dict() for part in self.parts]

    def load_state_dict(self, state: list[Any]) -> None:
        for part, part_state in zip(self.parts, state, strict=True):
            part.load_state_dict(part_state)

    def close_extras(self, **kwargs: Any) -> None:
        for part in self.parts:
            part.close()


def supports_state_dict(envs: VectorEnv) -> bool:
    if isinstance(envs, ConcatVectorEnv):
        return all(hasattr(part, "state_dict") for part in envs.parts)
    return hasattr(envs, "state_dict")
