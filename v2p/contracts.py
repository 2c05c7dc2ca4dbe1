"""The contracts between V2P's layers: typed records and the Protocols each side relies on.

A neutral module that the data modules, the models and the callbacks all import, so none of
them imports another to learn its types (Stable-Baselines3 keeps its sample types in
``common/type_aliases.py`` for the same reason), and nothing looks a partner up with
``getattr(..., default)``: a partner that lacks what a contract needs is refused by
:func:`require` with a message that names what is missing, instead of silently falling back.

Who provides what:

- the model (``SACModule``) is a :class:`Policy`, a :class:`ReplayFeatureProvider` and
  returns :class:`StepOutputs` from ``training_step``;
- the data module (``RolloutDataModule``) is a :class:`SourceCatalog` and a
  :class:`PriorityFeedback`, and yields :class:`RolloutBatch` / :class:`EvalBatch`;
- the callbacks read :class:`EpisodeRecord` from batches and :class:`StepOutputs` from the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, TypedDict, TypeVar, runtime_checkable

import numpy as np
import torch

from v2p.economics.shift import PLATFORM, ShiftCounts

__all__ = [
    "PLATFORM",
    "AttributionEvaluation",
    "AttributionProvider",
    "EpisodeBatch",
    "EpisodeRecord",
    "EvalBatch",
    "EvalTransitions",
    "Policy",
    "PriorityFeedback",
    "ReplayFeatureProvider",
    "ReplayFeatures",
    "ReplaySample",
    "RolloutBatch",
    "ShiftCounts",
    "SiteEvaluator",
    "SourceCatalog",
    "StepOutputs",
    "require",
    "source_names_of",
    "source_sites_of",
]

# ----------------------------------------------------------------------------- records


class ReplaySample(NamedTuple):
    """A batch of transitions, as tensors.

    ``reward`` is the raw env reward (the step's profit rate for the economic envs). The
    Lagrangian penalty is *not* folded in: the trainer computes it from ``err`` with the current
    multiplier at sample time. ``terminated`` is true termination only; a time-limit truncation
    is stored as 0 so that its target still bootstraps.
    """

    # (B, *obs_shape), stored dtype (uint8 for video); float32 (B, T, D) frame features or
    # (B, D) clip latents when the buffer stores them (ReplayBuffer.store_frame_features).
    # next_obs alike.
    obs: torch.Tensor
    action: torch.Tensor  # (B, action_dim) float32
    reward: torch.Tensor  # (B,) float32
    err: torch.Tensor  # (B,) float32
    next_obs: torch.Tensor  # (B, *obs_shape), stored dtype
    terminated: torch.Tensor  # (B,) float32
    source: torch.Tensor  # (B,) int64
    # Where the transitions are stored (flat slot * num_envs + env), and the importance weights
    # of a prioritised draw (None for a uniform one: every weight would be 1).
    index: torch.Tensor | None = None  # (B,) int64
    weight: torch.Tensor | None = None  # (B,) float32


class ReplayFeatures(NamedTuple):
    """What a fixed encoder makes of each stored frame, for
    :meth:`~v2p.data.replay.ReplayBuffer.store_frame_features`.

    ``encode`` maps raw frames ``(K, C, H, W)`` (or, with ``clip``, the clips ``(K, T, C, H,
    W)`` those frames end) to ``(K, dim)`` float32.
    """

    encode: Callable[[np.ndarray], np.ndarray]
    dim: int
    clip: bool = False


class EpisodeRecord(NamedTuple):
    """One finished episode of one env."""

    env_index: int
    source: int  # data-source id of the env (index into the data module's source names)
    length: int
    episode_return: float  # sum of env rewards (for the economic envs: sum of profit rates)
    shift: ShiftCounts | None  # None: the env reports no economics
    # Steps acted by the warm-up's uniform random actions rather than the policy (the shift
    # constraint can leave such shifts out of its multiplier: lambda_skip_warmup).
    random_steps: int = 0


class RolloutBatch(NamedTuple):
    """One training batch: a replay sample and the episodes that finished since the last one."""

    sample: ReplaySample
    episodes: tuple[EpisodeRecord, ...]


class EvalBatch(NamedTuple):
    """The deterministic evaluation episodes of one validation run."""

    episodes: tuple[EpisodeRecord, ...]
    env_steps: int  # training env steps taken so far (on this rank), the x-axis of learning curves
    source_names: tuple[str, ...] = (PLATFORM,)  # names of the episodes' source ids
    # Per source id, the source whose sites measure its contribution (see source_sites_of);
    # None: every source its own.
    source_sites: tuple[int, ...] | None = None


class EvalTransitions(NamedTuple):
    """One step of the platform's evaluation episodes, as the platform observed it: the envs
    still in their first episode, arrays with a leading dimension of their count."""

    obs: np.ndarray  # (n, *obs_shape)
    action: np.ndarray  # (n, A) float32
    reward: np.ndarray  # (n,) float32, the env's reward
    err: np.ndarray  # (n,) float32, the step's error rate (0 where the env is not economic)
    next_obs: np.ndarray  # (n, *obs_shape), the episode's last observation where it ended
    terminated: np.ndarray  # (n,) float32
    source: np.ndarray  # (n,) int, the envs' source ids


class AttributionEvaluation(NamedTuple):
    """One evaluation of each source's contribution (:mod:`v2p.models.attribution`).

    ``site_mpl[0][j]``: expected MPL [units/hr] at source j's sites with every source's data;
    ``site_mpl[1 + k][j]``: without source k's, measured by the head that left k out
    (``counterfactual``) or estimated to first order (``gradient``, :mod:`v2p.models.tracin`).
    ``contributions[k] = site_mpl[0][k] - site_mpl[1 + k][k]``, source k's contribution at its
    own sites.
    """

    global_step: int
    env_steps: int
    site_mpl: list[list[float]]  # (1 + S, S)
    contributions: list[float]  # (S,)


class StepOutputs(TypedDict, total=False):
    """What the SAC ``training_step`` returns, for the callbacks that follow it.

    ``shift_constraints`` is always present: one ``(err_target, lam)`` pair per entry of
    ``batch.episodes``, the error target and Lagrange multiplier in force for that shift after
    its multiplier update. ``novelty`` (n,) and ``novelty_source`` (n,) are present when the
    model scores the novelty of the batch's first n transitions (ECONOMICS.md section 7.2).
    """

    shift_constraints: list[tuple[float, float]]
    novelty: torch.Tensor
    novelty_source: torch.Tensor


# ----------------------------------------------------------------------------- protocols


@runtime_checkable
class AttributionProvider(Protocol):
    """A model that may measure each source's contribution at its own sites:
    ``attribution`` is None, or has ``evaluations``, a list of
    :class:`AttributionEvaluation`, oldest first."""

    attribution: Any


@runtime_checkable
class SiteEvaluator(Protocol):
    """Runs the platform's evaluation episodes at every site with a given policy (the
    model's own when ``act`` is None), handing each step's transitions to ``observe``."""

    def evaluate(
        self,
        act: Callable[..., np.ndarray] | None = None,
        observe: Callable[[EvalTransitions], None] | None = None,
    ) -> EvalBatch: ...


@runtime_checkable
class Policy(Protocol):
    """Acts in the envs: actions ``(N, A)`` for observations ``(N, *obs_shape)``."""

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray: ...


@runtime_checkable
class ReplayFeatureProvider(Protocol):
    """Tells the replay what to store instead of pixels (None: pixels)."""

    def replay_feature_encoder(self) -> ReplayFeatures | None: ...


@runtime_checkable
class SourceCatalog(Protocol):
    """Names the data sources that ``EpisodeRecord.source`` and ``ReplaySample.source`` index."""

    source_names: Sequence[str]


@runtime_checkable
class EpisodeBatch(Protocol):
    """A batch that carries the episodes that finished since the previous batch."""

    episodes: Sequence[EpisodeRecord]


def source_sites_of(datamodule: Any, num_sources: int) -> tuple[int, ...]:
    """Per source id, the env source whose sites measure the source's contribution and whose
    shifts are credited with it: itself for a site's own data, the owner's for a dataset
    uploaded without a site of its own (``RolloutDataModule.demonstrations``). A data module
    without ``source_sites`` has every source its own."""
    sites = getattr(datamodule, "source_sites", None)
    if sites is None:
        return tuple(range(num_sources))
    return tuple(int(k) for k in sites)


def source_names_of(datamodule: Any) -> tuple[str, ...]:
    """The data sources' names: a :class:`SourceCatalog`'s, or the platform alone when there
    is no data module (a model fitted on bare dataloaders)."""
    if datamodule is None:
        return (PLATFORM,)
    return tuple(require(datamodule, SourceCatalog, "the trainer's datamodule").source_names)


@runtime_checkable
class PriorityFeedback(Protocol):
    """A replay whose draws can follow scores the model reports for sampled transitions."""

    replay_priority: str  # "uniform" or "novelty"

    def update_priorities(self, index: torch.Tensor, novelty: torch.Tensor) -> None: ...


_T = TypeVar("_T")


def require(partner: Any, contract: type[_T], role: str) -> _T:
    """``partner`` as a ``contract``, or a ``TypeError`` naming what it lacks.

    ``role`` says what the partner is for, e.g. ``"the trainer's datamodule"``.
    """
    if isinstance(partner, contract):
        return partner
    members = [
        name
        for name in getattr(contract, "__protocol_attrs__", None) or _protocol_members(contract)
        if not hasattr(partner, name)
    ]
    raise TypeError(
        f"{role} ({type(partner).__name__}) does not provide {contract.__name__}: it lacks "
        f"{', '.join(members) or 'a member the contract needs'}"
    )


def _protocol_members(contract: type) -> list[str]:
    # Python < 3.12 keeps no __protocol_attrs__: read the declared members off the class.
    names = set(getattr(contract, "__annotations__", {}))
    names |= {k for k, v in vars(contract).items() if callable(v) and not k.startswith("_")}
    return sorted(names)
