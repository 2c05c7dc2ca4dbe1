"""RolloutDataModule: batched envs and a replay buffer, stepped by the policy being trained.

Acting happens in the main process (DESIGN.md: a dataloader worker would hold a stale copy of
the buffer). The training dataloader yields lightweight *tickets*; each ticket becomes a batch
in :meth:`RolloutDataModule.on_before_batch_transfer`, which Lightning calls when the batch is
consumed, right before ``training_step``. Stepping the envs there rather than in the
dataloader's iterator matters because Lightning prefetches one batch ahead: a checkpoint taken
after update k would otherwise already contain the env steps of update k + 1, and a resumed run
would not retrace the uninterrupted one.

An epoch is ``updates_per_epoch`` gradient updates, so validation (deterministic evaluation
episodes on separate envs) and checkpointing run on a schedule although the stream is endless.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import lightning as L
import numpy as np
import torch
from gymnasium.envs.registration import load_env_creator
from gymnasium.vector import AutoresetMode
from lightning.pytorch.utilities import rank_zero_warn
from lightning_utilities.core.apply_func import apply_to_collection
from torch.utils.data import DataLoader, IterableDataset

from v2p.contracts import (
    PLATFORM,
    EpisodeRecord,
    EvalBatch,
    EvalTransitions,
    Policy,
    ReplayFeatureProvider,
    RolloutBatch,
    ShiftCounts,
    require,
)
from v2p.data.checkpoint_io import ReplayCheckpointIO, read_replay, stage_replay
from v2p.data.demonstrations import (
    Demonstration,
    DemonstrationEpisodes,
    load_demonstration,
    mix_samples,
    observation,
)
from v2p.data.episodes import EpisodeTracker
from v2p.data.replay import ReplayBuffer
from v2p.data.sources import ConcatVectorEnv, DataSource, check_sources, supports_state_dict
from v2p.envs.accounting import error_rates
from v2p.rng_state import capture_global_rng, restore_global_rng
from v2p.validation import check_int, check_scalar

REPLAY_PRIORITIES = ("uniform", "novelty")


class _Ticket:
    """Stands for one training batch until it is consumed (see the module docstring)."""


class _TicketStream(IterableDataset):
    def __init__(self, datamodule: RolloutDataModule) -> None:
        self.datamodule = datamodule

    def __len__(self) -> int:  # a known total for the progress bar
        return self.datamodule.updates_per_epoch

    def __iter__(self):
        dm = self.datamodule
        if dm._updates_in_epoch >= dm.updates_per_epoch:
            dm._updates_in_epoch = 0
        # A run resumed mid-epoch finishes the epoch it was in.
        for _ in range(dm.updates_per_epoch - dm._updates_in_epoch):
            yield _Ticket()


class _EvaluationRun(IterableDataset):
    def __init__(self, datamodule: RolloutDataModule) -> None:
        self.datamodule = datamodule

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        yield self.datamodule.evaluate()


def last_observations(next_obs: np.ndarray, done: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """Each env's observation after its step: ``next_obs``, except where an episode ended,
    whose last observation is in ``info["final_obs"]`` (same-step autoreset has already put
    the next episode's first one in ``next_obs``)."""
    if not done.any():
        return next_obs
    final_obs = next_obs.copy()
    final_obs[done] = np.stack(list(info["final_obs"][done]))
    return final_obs


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None) -> gym.Env:
    """``gymnasium.make`` with errors that name the env id and the bad argument."""
    import v2p.envs  # noqa: F401  (registers the v2p ids)

    kwargs = dict(env_kwargs or {})
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as e:
        known = ", ".join(sorted(i for i in gym.registry if i.startswith("v2p/")))
        raise ValueError(f"cannot make env {env_id!r}: {e}. V2P ids: {known}") from e
    except TypeError as e:
        raise ValueError(f"bad env_kwargs {kwargs!r} for env {env_id!r}: {e}") from e


def make_vector_env(
    env_id: str, num_envs: int, env_kwargs: dict[str, Any] | None = None, workers: int = 1
):
    """N copies of ``env_id`` with same-step autoreset, batched natively where the env can;
    ``workers > 1`` splits them over processes where its vector env can
    (``v2p/DishwashingPhysics-v0``)."""
    kwargs = dict(env_kwargs or {})
    spec = gym.spec(env_id)
    if workers > 1:
        entry = spec.vector_entry_point
        creator = entry if entry is None or callable(entry) else load_env_creator(entry)
        if creator is None or "workers" not in inspect.signature(creator).parameters:
            raise ValueError(
                f"env_workers={workers}: {env_id!r} cannot step its envs in worker processes "
                "(the synthetic envs step every site at once in numpy); use env_workers=1"
            )
        kwargs["workers"] = min(workers, num_envs)
    if spec.vector_entry_point is not None:
        envs = gym.make_vec(env_id, num_envs=num_envs, **kwargs)
    else:
        envs = gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
            **kwargs,
        )
    mode = envs.metadata.get("autoreset_mode")
    if mode != AutoresetMode.SAME_STEP:
        raise ValueError(f"{env_id!r} vector env autoresets in mode {mode}, expected SAME_STEP")
    return envs


def with_final_step_info(info: dict[str, Any]) -> dict[str, Any]:
    """Vector-env infos with the finished envs' last-step values where they belong.

    Gymnasium's own vector envs, autoresetting in the same step, report a finished env's reset
    info at the top level and its last step's info under ``final_info``; the shift accounting
    needs the last step. Native V2P vector envs report the step at the top level already (no
    ``final_info``) and pass through unchanged.
    """
    final = info.get("final_info")
    if not isinstance(final, dict) or not final:
        return info
    merged = dict(info)
    for key, values in final.items():
        if key.startswith("_"):
            continue
        ended = np.asarray(final.get(f"_{key}", np.ones(len(values), dtype=bool)))
        values = np.asarray(values)
        current = merged.get(key)
        if current is None:
            current = np.zeros_like(values)
        current = np.array(current, dtype=np.result_type(current, values))  # a copy
        current[ended] = values[ended]
        merged[key] = current
        merged[f"_{key}"] = np.asarray(merged.get(f"_{key}", ended)) | ended
    return merged


def _to_checkpoint(state: Any) -> Any:
    """numpy arrays -> tensors, so checkpoints load with ``torch.load(weights_only=True)``."""
    return apply_to_collection(state, np.ndarray, torch.from_numpy)


def _from_checkpoint(state: Any) -> Any:
    return apply_to_collection(state, torch.Tensor, lambda t: t.numpy())


class RolloutDataModule(L.LightningDataModule):
    """Envs, replay and evaluation for off-policy training of any Box-action gymnasium env.

    Args:
        env_id: a gymnasium id, e.g. ``v2p/Dishwashing-v0`` or ``Pendulum-v1``.
        env_kwargs: constructor keyword arguments of the env (the task parameters).
        num_envs: envs stepped together per collection step.
        buffer_size: replay capacity in transitions.
        batch_size: transitions per gradient update.
        warmup_steps: env steps with uniform random actions before the first update, at least
            ``batch_size`` (the first update draws that many).
        updates_per_step: gradient updates per collection step (of ``num_envs`` env steps);
            ``updates_per_step == num_envs`` is one update per env step.
        updates_per_epoch: gradient updates per epoch, then evaluation and checkpointing.
        eval_episodes: deterministic evaluation episodes per validation and per source, one
            per eval env.
        source_name: the data source of these envs (the platform's own site by default).
        sources: several data sources (ECONOMICS.md section 7), each a name, a number of envs
            and task parameters on top of ``env_kwargs``; replaces ``num_envs`` and
            ``source_name``. Every transition and shift carries its source, and evaluation
            runs ``eval_episodes`` per source.
        replay_priority: ``uniform`` sampling, or ``novelty``: prioritised replay whose
            priorities are the novelty scores the model reports (``softplus(novelty)``), with
            importance weights; needs a model that scores novelty.
        priority_alpha, priority_beta: the prioritisation exponent and the importance-weight
            exponent of prioritised replay.
        replay_on_device: keep a copy of the replay on the training device (the GPU) and
            gather batches there: no host-to-device copy of every batch. Costs device memory
            of the size of the buffer.
        env_workers: processes that step the envs of each source (and the evaluation envs),
            for envs that render in Python, one after the other (the physics env: about 350
            steps per CPU second); 1 steps them in the training process. The same run,
            step for step, with any count.
        demonstrations: recorded datasets (``v2p record``; each a name and a folder, see
            :class:`~v2p.data.demonstrations.Demonstration`) drawn into every batch beside the
            online replay, as RLPD does. Each is a data source of its own, named after the
            env sources in ``source_names``; ``source_sites`` maps it to its owner's sites.
        demo_share: the share of every batch drawn from the demonstrations, in [0, 1); None
            gives RLPD's 0.5 with demonstrations and 0 without.
    """

    def __init__(
        self,
        env_id: str = "v2p/Dishwashing-v0",
        env_kwargs: dict[str, Any] | None = None,
        num_envs: int = 4,
        buffer_size: int = 100_000,
        batch_size: int = 256,
        warmup_steps: int = 1_000,
        updates_per_step: int = 4,
        updates_per_epoch: int = 1_000,
        eval_episodes: int = 8,
        source_name: str = PLATFORM,
        sources: list[DataSource] | None = None,
        replay_priority: str = "uniform",
        priority_alpha: float = 0.6,
        priority_beta: float = 0.4,
        replay_on_device: bool = False,
        env_workers: int = 1,
        demonstrations: list[Demonstration] | None = None,
        demo_share: float | None = None,
    ) -> None:
        super().__init__()
        for name in (
            "num_envs",
            "buffer_size",
            "batch_size",
            "updates_per_step",
            "updates_per_epoch",
            "eval_episodes",
            "env_workers",
        ):
            check_int(name, locals()[name], ge=1)
        check_int("warmup_steps", warmup_steps, ge=0)
        if replay_priority not in REPLAY_PRIORITIES:
            raise ValueError(
                f"replay_priority must be one of {REPLAY_PRIORITIES}, got {replay_priority!r}"
            )
        check_scalar("priority_alpha", priority_alpha, ge=0.0)
        check_scalar("priority_beta", priority_beta, ge=0.0, le=1.0)
        self.replay_priority = replay_priority
        self.priority_alpha = priority_alpha
        self.priority_beta = priority_beta
        self.replay_on_device = replay_on_device
        self.env_workers = env_workers
        # Sources as plain dicts: a checkpoint's hyper-parameters must load with weights_only.
        self.save_hyperparameters(ignore=["sources", "demonstrations"])
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.sources = check_sources(
            [DataSource(source_name, num_envs)] if sources is None else list(sources)
        )
        self.demonstrations = [
            d if isinstance(d, Demonstration) else Demonstration(**d) for d in demonstrations or []
        ]
        if self.demonstrations:
            self.hparams["demonstrations"] = [dataclasses.asdict(d) for d in self.demonstrations]
        self.source_names = [source.name for source in self.sources]
        self.source_names += [demo.name for demo in self.demonstrations]
        repeated = sorted({n for n in self.source_names if self.source_names.count(n) > 1})
        if repeated:
            raise ValueError(
                f"the names of sources and demonstrations must be unique; repeated: {repeated}"
            )
        if sources is not None:
            self.hparams["sources"] = [dataclasses.asdict(source) for source in self.sources]
        env_names = [source.name for source in self.sources]
        for demo in self.demonstrations:
            if demo.owner is not None and demo.owner not in env_names:
                raise ValueError(
                    f"demonstration {demo.name!r} has owner {demo.owner!r}, which is not one of "
                    f"the env sources {env_names}"
                )
        # Per source id, the env source whose sites measure it (source_sites_of).
        self.source_sites = list(range(len(self.sources))) + [
            0 if demo.owner is None else env_names.index(demo.owner) for demo in self.demonstrations
        ]
        if demo_share is None:
            demo_share = 0.5 if self.demonstrations else 0.0
        check_scalar("demo_share", demo_share, ge=0.0)
        if demo_share >= 1.0:
            raise ValueError(
                f"demo_share must be in [0, 1) (the rest of each batch is online replay), got "
                f"{demo_share!r}"
            )
        if demo_share > 0 and not self.demonstrations:
            raise ValueError(
                f"demo_share={demo_share} draws from demonstrations, but none are given: add "
                "data.demonstrations or set demo_share to 0"
            )
        self.demo_share = float(demo_share)
        # Rows of each batch from the demonstrations; at least one of each kind.
        self.demo_batch = min(batch_size - 1, max(1, round(demo_share * batch_size)))
        if not self.demonstrations:
            self.demo_batch = 0
        num_envs = sum(source.num_envs for source in self.sources)
        if buffer_size < num_envs:
            raise ValueError(f"buffer_size ({buffer_size}) must be >= num_envs ({num_envs})")
        self.num_envs = num_envs
        # The source id of every site, in the order the sources' envs are concatenated.
        self.env_sources = np.repeat(
            np.arange(len(self.sources)), [source.num_envs for source in self.sources]
        )
        self.buffer_size = buffer_size
        self.batch_size = batch_size
        if warmup_steps < batch_size:
            raise ValueError(
                f"warmup_steps ({warmup_steps}) must be >= batch_size ({batch_size}): the first "
                "update draws batch_size transitions, which the warm-up must have stored"
            )
        if buffer_size < batch_size:
            raise ValueError(
                f"buffer_size ({buffer_size}) must be >= batch_size ({batch_size}): a smaller "
                "replay would draw the same transitions twice in one batch"
            )
        self.warmup_steps = warmup_steps
        self.updates_per_step = updates_per_step
        self.updates_per_epoch = updates_per_epoch
        self.eval_episodes = eval_episodes

        # Fails here, at configuration, on a bad id or bad kwargs of any source.
        obs_space, action_space = self._probe_spaces()
        if not isinstance(obs_space, gym.spaces.Box):
            raise ValueError(f"{env_id!r} has observation space {obs_space}; expected a Box")
        if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
            raise ValueError(f"{env_id!r} has action space {action_space}; expected a 1-D Box")
        if not (np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()):
            raise ValueError(f"{env_id!r} has an unbounded action space {action_space}")
        self.observation_shape: tuple[int, ...] = tuple(obs_space.shape)
        self.obs_dtype = np.uint8 if obs_space.dtype == np.uint8 else np.float32
        # uint8 (T, C, H, W) observations are frame histories: store each frame once.
        is_clip = self.obs_dtype == np.uint8 and len(self.observation_shape) == 4
        self.frame_stack = self.observation_shape[0] if is_clip else None
        self.action_low: list[float] = action_space.low.astype(float).tolist()
        self.action_high: list[float] = action_space.high.astype(float).tolist()

        # Read here, so a bad recording fails at configuration; stored in setup().
        self._demos: list[DemonstrationEpisodes] = [
            load_demonstration(
                demo, self.observation_shape, np.dtype(self.obs_dtype), len(self.action_low)
            )
            for demo in self.demonstrations
        ]
        self.demo_buffer: ReplayBuffer | None = None
        self.envs = None
        self.buffer: ReplayBuffer | None = None
        self.env_steps = 0
        self._updates_in_epoch = 0
        self._pending_updates = 0
        self._pending_episodes: list[EpisodeRecord] = []

    def _source_kwargs(self, source: DataSource) -> dict[str, Any]:
        return {**self.env_kwargs, **source.env_kwargs}

    def _probe_spaces(self) -> tuple[gym.Space, gym.Space]:
        spaces = []
        for source in self.sources:
            probe = make_env(source.env_id or self.env_id, self._source_kwargs(source))
            spaces.append((probe.observation_space, probe.action_space))
            probe.close()
        for source, space in zip(self.sources, spaces, strict=True):
            if space != spaces[0]:
                raise ValueError(
                    f"source {source.name!r} has spaces {space}, source "
                    f"{self.sources[0].name!r} {spaces[0]}: every source must share them"
                )
        return spaces[0]

    def _make_envs(self, envs_per_source: int | None = None):
        """One vector env over every source's sites (``envs_per_source`` overrides the counts)."""
        parts = [
            make_vector_env(
                source.env_id or self.env_id,
                envs_per_source or source.num_envs,
                self._source_kwargs(source),
                self.env_workers,
            )
            for source in self.sources
        ]
        return parts[0] if len(parts) == 1 else ConcatVectorEnv(parts)

    # ------------------------------------------------------------------ setup

    def setup(self, stage: str) -> None:
        if self.buffer is not None:
            return
        rank = self.trainer.global_rank if self.trainer is not None else 0
        # Every seed derives from the one seed_everything() set, offset by rank under DDP.
        seeds = np.random.SeedSequence([torch.initial_seed() % 2**63, rank]).generate_state(3)
        self._rng = np.random.default_rng(int(seeds[0]))
        self._eval_seed = int(seeds[2])
        self.envs = self._make_envs()
        self._obs, _ = self.envs.reset(seed=int(seeds[1]))
        self._episode_start = np.ones(self.num_envs, dtype=bool)
        self._tracker = EpisodeTracker(self.num_envs, self.env_sources)
        self.buffer = self._new_buffer(self.buffer_size, self.num_envs)
        if self._demos:
            # Room for every transition and, for clips, every episode's first T frames: the
            # frame ring is sized by the transitions, and no demonstration frame may drop out.
            episodes = sum(len(d.actions) for d in self._demos)
            extra = episodes * self.frame_stack if self.frame_stack else 0
            capacity = sum(d.transitions for d in self._demos) + extra
            self.demo_buffer = self._new_buffer(capacity, 1)
            for j, demo in enumerate(self._demos):
                self._fill_demo_buffer(demo, len(self.sources) + j)

    def _new_buffer(self, capacity: int, num_envs: int) -> ReplayBuffer:
        buffer = ReplayBuffer(
            capacity=capacity,
            num_envs=num_envs,
            obs_shape=self.observation_shape,
            action_dim=len(self.action_low),
            obs_dtype=self.obs_dtype,
            frame_stack=self.frame_stack,
        )
        # A model whose encoder is fixed, whole or in part, has the replay keep what the fixed
        # part makes of each frame rather than its pixels.
        features = None
        if self.trainer is not None:
            module = require(self.trainer.lightning_module, ReplayFeatureProvider, "the model")
            features = module.replay_feature_encoder()
        if features is not None:
            if self.frame_stack is None:
                raise ValueError(
                    "the model's cache_frame_features needs uint8 frame-history observations "
                    f"(T, C, H, W); {self.env_id!r} gives {np.dtype(self.obs_dtype).name} "
                    f"{self.observation_shape}: set model.cache_frame_features=false"
                )
            buffer.store_frame_features(*features)
        if self.replay_on_device:
            device = self.trainer.strategy.root_device if self.trainer is not None else "cpu"
            buffer.to_device(device)
        return buffer

    def _fill_demo_buffer(self, demo: DemonstrationEpisodes, source: int) -> None:
        """Add a demonstration's transitions one step at a time, as a single env would."""
        source_id = np.array([source])
        for stored, actions, rewards, costs, terminated in zip(*demo[:5], strict=True):
            for k in range(len(actions)):
                self.demo_buffer.add(
                    observation(stored, k, self.frame_stack)[None],
                    actions[k : k + 1],
                    rewards[k : k + 1],
                    costs[k : k + 1],
                    observation(stored, k + 1, self.frame_stack)[None],
                    terminated[k : k + 1].astype(np.float32),
                    source_id,
                    episode_start=np.array([k == 0]),
                )

    def teardown(self, stage: str) -> None:
        if stage != "fit":
            return
        if self.envs is not None:
            self.envs.close()
        if hasattr(self, "_eval_envs"):  # and their worker processes, where they have them
            self._eval_envs.close()
            del self._eval_envs  # a later validate() or test() makes new ones

    # ------------------------------------------------------------ dataloaders

    # num_workers must stay 0: a worker would copy the buffer and never see new transitions.
    # Each loader gets a generator of its own because creating a DataLoader iterator draws a
    # seed from the global torch RNG; a run resumed mid-epoch creates one more iterator than the
    # uninterrupted run, which would shift every later policy sample.

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            _TicketStream(self), batch_size=None, num_workers=0, generator=torch.Generator()
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            _EvaluationRun(self), batch_size=None, num_workers=0, generator=torch.Generator()
        )

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()  # the same deterministic evaluation episodes

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, _Ticket):
            return self._next_training_batch()
        return batch

    def _next_training_batch(self) -> RolloutBatch:
        while self.env_steps < self.warmup_steps:
            self.collect(random_actions=True)
        if self._pending_updates == 0:
            self.collect(random_actions=False)
            self._pending_updates = self.updates_per_step
        self._pending_updates -= 1
        self._updates_in_epoch += 1
        online = self.batch_size - self.demo_batch
        if self.replay_priority == "novelty":
            sample = self.buffer.sample(online, self._rng, self.priority_alpha, self.priority_beta)
        else:
            sample = self.buffer.sample(online, self._rng)
        if self.demo_buffer is not None:
            sample = mix_samples(sample, self.demo_buffer.sample(self.demo_batch, self._rng))
        episodes, self._pending_episodes = tuple(self._pending_episodes), []
        return RolloutBatch(sample, episodes)

    def update_priorities(self, index: torch.Tensor, novelty: torch.Tensor) -> None:
        """Novelty scores of sampled transitions become their replay priorities (a host
        read of ``n`` values); nothing happens with uniform replay."""
        if self.replay_priority != "novelty":
            return
        priority = torch.nn.functional.softplus(novelty.detach().float()) + 1e-3
        index, priority = index.cpu().numpy(), priority.cpu().numpy()
        online = index >= 0  # demonstration rows (index -1) have no online priority
        self.buffer.update_priorities(index[online], priority[online])

    # ------------------------------------------------------------- rollouts

    def _policy(self) -> Callable[..., np.ndarray]:
        if self.trainer is None:
            raise RuntimeError("RolloutDataModule acts with its trainer's model: attach a trainer")
        return require(self.trainer.lightning_module, Policy, "the model").act

    def collect(self, random_actions: bool = False) -> None:
        """Step every env once and store the transitions."""
        if random_actions:
            low, high = np.asarray(self.action_low), np.asarray(self.action_high)
            actions = self._rng.uniform(low, high, (self.num_envs, low.size))
        else:
            actions = self._policy()(self._obs, deterministic=False)
        actions = np.asarray(actions, dtype=np.float32)
        if not np.isfinite(actions).all():
            raise FloatingPointError(
                f"the policy produced non-finite actions (NaN or inf) after {self.env_steps} env "
                "steps: its weights have diverged. Resume from the last checkpoint with lower "
                "learning rates or reward_scale."
            )
        next_obs, reward, terminated, truncated, info = self.envs.step(actions)
        info = with_final_step_info(info)
        reward = np.asarray(reward, dtype=np.float32)
        if not np.isfinite(reward).all():
            bad = int(np.flatnonzero(~np.isfinite(reward))[0])
            raise ValueError(
                f"env {self.env_id!r} returned a non-finite reward {reward[bad]} (env {bad})"
            )
        done = np.logical_or(terminated, truncated)
        final_obs = last_observations(next_obs, done, info)
        err = error_rates(info, self.num_envs, f"env {self.env_id!r}")
        self.buffer.add(
            self._obs,
            actions,
            reward,
            err,
            final_obs.astype(self.obs_dtype, copy=False),
            np.asarray(terminated, dtype=np.float32),
            self.env_sources,
            episode_start=self._episode_start,
        )
        self._pending_episodes.extend(self._tracker.step(reward, done, info, random_actions))
        self._obs = next_obs
        self._episode_start = done
        self.env_steps += self.num_envs

    def evaluate(
        self,
        act: Callable[..., np.ndarray] | None = None,
        observe: Callable[[EvalTransitions], None] | None = None,
    ) -> EvalBatch:
        """One deterministic episode on each of ``eval_episodes`` separate envs per source,
        acted by ``act(obs, deterministic=True)`` (the trainer's model when None).

        The eval envs are reset with the same seed every time, so successive evaluations
        differ only by the policy. ``observe``, if given, is handed every step's transitions
        as the platform observed them (gradient attribution measures its site objectives on
        them, :mod:`v2p.models.tracin`).
        """
        if not hasattr(self, "_eval_envs"):
            self._eval_envs = self._make_envs(envs_per_source=self.eval_episodes)
        envs = self._eval_envs
        obs, _ = envs.reset(seed=self._eval_seed)
        n = envs.num_envs
        sources = np.repeat(np.arange(len(self.sources)), self.eval_episodes)
        tracker = EpisodeTracker(n, sources)
        finished: dict[int, EpisodeRecord] = {}
        act = act or self._policy()
        while len(finished) < n:
            actions = np.asarray(act(obs, deterministic=True), dtype=np.float32)
            next_obs, reward, terminated, truncated, info = envs.step(actions)
            info = with_final_step_info(info)
            done = np.logical_or(terminated, truncated)
            if observe is not None:
                final_obs = last_observations(next_obs, done, info)
                live = np.array([i not in finished for i in range(n)])
                observe(
                    EvalTransitions(
                        obs[live],
                        actions[live],
                        np.asarray(reward, np.float32)[live],
                        error_rates(info, n, f"env {self.env_id!r}")[live],
                        final_obs[live],
                        np.asarray(terminated, np.float32)[live],
                        sources[live],
                    )
                )
            for record in tracker.step(np.asarray(reward, np.float64), done, info):
                finished.setdefault(record.env_index, record)
            obs = next_obs
        return EvalBatch(
            tuple(finished[i] for i in sorted(finished)),
            self.env_steps,
            tuple(self.source_names),
            tuple(self.source_sites),
        )

    # ---------------------------------------------------------- checkpointing

    def state_dict(self) -> dict[str, Any]:
        """Everything exact resume needs, for every rank: ``{"world_size": W, "ranks": [...]}``,
        each entry that rank's env states, RNG, counters, pending episodes and replay.

        Lightning calls this on every rank while it dumps a checkpoint but writes rank 0's
        result only (``Strategy.save_checkpoint``), so under DDP the other ranks' entries are
        gathered here with a collective, as :class:`~v2p.callbacks.EconomicsCallback` gathers
        its own. With :class:`ReplayCheckpointIO` a replay travels as a side file: rank 0's
        entry holds its live buffer until the plugin writes it out, and every other rank stages
        its buffer in ``<default_root_dir>/.replay-staging`` for rank 0's plugin to move beside
        the checkpoint; without the plugin the buffers are in the entries.
        """
        if self.buffer is None:
            return {}
        trainer = self.trainer
        world_size = 1 if trainer is None else trainer.world_size
        rank = 0 if trainer is None else trainer.global_rank
        own = self._rank_state(rank)
        if world_size == 1:
            return {"world_size": 1, "ranks": [own]}
        # Rank 0's entry stays here (it holds the live buffer); the others' go to everyone,
        # since a broadcast is the collective Lightning's strategies offer.
        ranks: list[dict[str, Any] | None] = [own if rank == 0 else None]
        for k in range(1, world_size):
            ranks.append(trainer.strategy.broadcast(own if rank == k else None, src=k))
        return {"world_size": world_size, "ranks": ranks}

    def _rank_state(self, rank: int) -> dict[str, Any]:
        uses_side_file = self.trainer is not None and isinstance(
            self.trainer.strategy.checkpoint_io, ReplayCheckpointIO
        )
        env_state = self.envs.state_dict() if supports_state_dict(self.envs) else None
        state = {
            "env": env_state,
            "obs": self._obs,
            "episode_start": self._episode_start,
            "tracker": self._tracker.state_dict(),
            "rng": self._rng.bit_generator.state,
            "env_steps": self.env_steps,
            "updates_in_epoch": self._updates_in_epoch,
            "pending_updates": self._pending_updates,
            "pending_episodes": [_record_to_dict(r) for r in self._pending_episodes],
            "demonstrations": self._demo_digests(),
        }
        state = _to_checkpoint(state)
        state["global_rng"] = capture_global_rng()
        if not uses_side_file:
            state["replay"] = _to_checkpoint(self.buffer.state_dict())
        elif rank == 0:
            state["replay"] = self.buffer
        else:
            staging = os.path.join(self.trainer.default_root_dir, ".replay-staging")
            state["replay"] = stage_replay(self.buffer, staging, rank)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if self.buffer is None:
            raise RuntimeError("load_state_dict before setup(): the buffer does not exist yet")
        rank = self.trainer.global_rank if self.trainer is not None else 0
        world_size = self.trainer.world_size if self.trainer is not None else 1
        if "ranks" not in state:  # written before every rank was saved: rank 0's state only
            if rank > 0:
                rank_zero_warn(
                    "resuming a multi-rank run from an older checkpoint: rank 0 continues its "
                    "envs and replay exactly; the other ranks restart theirs (the checkpoint "
                    "holds rank 0's only)"
                )
                return
            self._load_rank_state(state)
            return
        if state["world_size"] != world_size:
            raise ValueError(
                f"the checkpoint's data-module state is from {state['world_size']} ranks; "
                f"resuming on {world_size} would leave ranks without their envs and replay "
                f"(resume with --trainer.devices / num_nodes giving {state['world_size']} ranks)"
            )
        entry = state["ranks"][rank]
        self._load_rank_state(entry)
        if rank > 0:
            # The torch generator differs between ranks and draws every rank's policy noise;
            # SACModule restores rank 0's on every rank (it saves only rank 0's), and the
            # data module is restored after the model (Lightning's _restore_modules_and_callbacks),
            # so each other rank's own state wins here.
            restore_global_rng(entry["global_rng"])

    def _demo_digests(self) -> dict[str, str]:
        return {
            demo.name: data.digest
            for demo, data in zip(self.demonstrations, self._demos, strict=True)
        }

    def _load_rank_state(self, state: dict[str, Any]) -> None:
        saved, now = state.get("demonstrations", {}), self._demo_digests()
        if saved != now:
            changed = sorted(n for n in {*saved, *now} if saved.get(n) != now.get(n))
            raise ValueError(
                f"the demonstrations differ from the checkpoint's (datasets {changed} were "
                f"added, removed or recorded again: checkpoint {sorted(saved)}, now "
                f"{sorted(now)}); the resumed run would not continue the saved one. Resume "
                "with the checkpoint's data.demonstrations and recordings"
            )
        state = _from_checkpoint({k: v for k, v in state.items() if k != "global_rng"})
        replay = state["replay"]
        # A side file (ReplayCheckpointIO resolved its path), or arrays in the checkpoint.
        self.buffer.load_state_dict(read_replay(replay) if "path" in replay else replay)
        if state["env"] is not None:
            self.envs.load_state_dict(state["env"])
        else:  # an env without state_dict restarts its episodes: resume is then not exact
            self._obs, _ = self.envs.reset(seed=int(self._rng.integers(2**31)))
            state["episode_start"] = np.ones(self.num_envs, dtype=bool)
            state["obs"] = self._obs
            state["tracker"] = EpisodeTracker(self.num_envs, self.env_sources).state_dict()
        self._obs = state["obs"]
        self._episode_start = state["episode_start"]
        self._tracker.load_state_dict(state["tracker"])
        self._rng.bit_generator.state = state["rng"]
        self.env_steps = int(state["env_steps"])
        self._updates_in_epoch = int(state["updates_in_epoch"])
        self._pending_updates = int(state["pending_updates"])
        self._pending_episodes = [_record_from_dict(d) for d in state["pending_episodes"]]


def _record_to_dict(record: EpisodeRecord) -> dict[str, Any]:
    data = record._asdict()
    data["shift"] = None if record.shift is None else record.shift._asdict()
    return data


def _record_from_dict(data: dict[str, Any]) -> EpisodeRecord:
    shift = data["shift"]
    return EpisodeRecord(**{**data, "shift": None if shift is None else ShiftCounts(**shift)})
