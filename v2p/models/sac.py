"""Soft Actor-Critic on a shared encoder, with the Lagrangian quality constraint.

Reads top to bottom like CleanRL's ``sac_continuous_action.py``; the differences, each for a
reason:

- One optimiser over three parameter groups (encoder + critic, actor, temperature) and one
  backward pass of the summed losses. The three losses touch disjoint parameters (the actor
  sees a detached latent and a frozen view of the critic; the temperature loss a detached
  log-prob), so this equals three separate steps with the actor reading the pre-update
  critic, as in the simultaneous updates of jaxrl. It also makes ``trainer.global_step``
  count gradient updates: with several optimisers Lightning counts every ``step()``
  (Lightning issue 17958), and ``max_steps`` would stop early.
- The critic loss trains the encoder; the actor and the temperature see ``z.detach()`` (the
  SAC-AE pattern, Yarats et al. 2019), which also avoids DDP's unused-parameter errors.
- Next-state latents come from the online encoder without gradient and feed target critic
  heads (DrQ-v2), so each update runs the encoder twice, not three times.
- The reward is ``profit - lambda * max(0, err - e*)`` with the *current* lambda and target
  (ECONOMICS.md section 3); replay stores profit and error separately for that reason.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.utilities import rank_zero_warn
from torch.func import functional_call
from torch.nn import functional as F

from v2p.contracts import EvalBatch, ReplayFeatures, ReplaySample, RolloutBatch
from v2p.economics import DualAscent, error_rate, mpl, sla_target
from v2p.encoders import encoder_from_hparams
from v2p.models.components import Actor, TwinCritic
from v2p.models.novelty import LatentDiffusionNovelty
from v2p.models.pretrain import load_pretrained_encoder
from v2p.validation import check_int, check_scalar

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class SACModule(L.LightningModule):
    """SAC over ``z = encoder(obs)``; the policy never sees the observation's modality.

    Args:
        observation_shape, action_low, action_high: the env's spaces (linked from the data
            module by the CLI).
        encoder_arch: ``mlp | simple2dcnn | simple3dcnn | r3d18``.
        latent_dim: size of ``z``.
        encoder_hidden_dim: hidden width of the MLP encoder.
        encoder_channels: base channels of the simple CNN encoders.
        encoder_weights_path: local R3D-18 weights file (never downloaded).
        encoder_channels_last: channels-last memory format in the clip encoders' convolutions
            (pays on a GPU with bf16 autocast, ``--trainer.precision=bf16-mixed``).
        encoder_ckpt: a pretraining (or SAC) checkpoint whose encoder weights start this
            model's encoder; its architecture, latent size and observation shape must match.
        freeze_encoder: ``false``: the critic loss trains the whole encoder; ``true``: keep its
            weights fixed (no gradients, eval mode); ``trunk``: keep the feature extractor
            fixed (eval mode) and let the critic train the encoder's head, the Linear +
            LayerNorm that makes the latent (a frozen backbone with a trained projection).
        reset_encoder_head: re-initialise the head after loading ``encoder_ckpt`` (with
            ``freeze_encoder: trunk``: pretrained features, a fusion learnt for this task).
            A pretrained head is a poor start for SAC on the dishwashing video
            (docs/benchmarks.md).
        cache_frame_features: on video, with a fixed encoder, the replay stores what the fixed
            part makes of each frame instead of its pixels, computed once when the frame is
            added, so updates skip the CNN (they ran it on 2 x B x T frames each). With
            ``freeze_encoder: true`` (any clip encoder): the latent of the clip the frame
            ends; with ``trunk`` on a per-frame encoder (``simple2dcnn``): the frame's trunk
            features, which the trained head pools. Elsewhere it has no effect.
        novelty_ckpt: a trained :class:`~v2p.models.novelty.LatentDiffusionNovelty` checkpoint
            (frozen) that scores every batch's latents; it must have been trained on this
            encoder's latents, so use it with the same pretrained, frozen encoder.
        novelty_online: instead, train a fresh novelty model on the replay latents of every
            update (one more loss in the same backward pass); it follows a fine-tuned encoder.
        novelty_lr, novelty_hidden_dim: learning rate and denoiser width of the online novelty
            model.
        novelty_calibration_updates: the online model's z-scoring statistics follow its
            errors for this many updates, then stay fixed: scores then fall as the model
            learns the data it keeps seeing and stay high for what it rarely sees, so novelty
            can tell early, informative training data from late, redundant data (statistics
            that kept following would z-score every batch to about 0).
        novelty_fit_sources: names of the data sources whose transitions train the online
            novelty model (its denoiser, normaliser and statistics); None: every source. With
            ``[platform]`` novelty measures how far data lies from the platform's own, which is
            what the EconomicsCallback's marginal attribution credits a customer for: a model
            fitted on every source learns the customers' data too, and then finds it familiar.
        novelty_batch: score only the first ``novelty_batch`` transitions of each (uniformly
            sampled) batch; None scores all of them. Scoring costs up to 10 denoiser passes
            per transition.
        hidden_dim, hidden_layers: actor and critic MLPs.
        unit_head_inputs: the actor and critics read the latent at unit norm,
            ``z / sqrt(latent_dim)``, and the critics read actions mapped from the box to
            ``[-1, 1]``. Every encoder ends in LayerNorm, whose unit-variance features give ``z``
            a norm of ``sqrt(latent_dim)``; at that scale the latent drowns the action in the
            critics' first layer (2 of 66 inputs on the dishwashing tasks), and the critics are
            slow to learn how the action matters. Measured on the state task
            (docs/benchmarks.md): 95% of the ceiling at a median of 1,400 env steps over 10
            seeds, against 1,850; late in training three seeds cannot tell the two apart. The
            state config turns it on; off by default so that checkpoints trained without it load
            as they were trained.
        gamma: discount factor.
        tau: Polyak rate of the target critic.
        critic_lr, actor_lr, alpha_lr: learning rates of the three parameter groups.
        init_alpha: initial entropy temperature.
        target_entropy: entropy target; None = -action_dim (SAC paper).
        reward_scale: multiplies the (penalised) reward; profit is O(10) $/hr.
        lambda_init, dual_lr: Lagrange multiplier start and dual-ascent rate ``eta``.
        err_target_init, err_target_final, curriculum_episodes: the error-target curriculum.
        finite_check_every: updates between checks that the losses are finite (a host sync).
        compile_update: run the SAC losses (encoder, actor, critics) through ``torch.compile``;
            the first updates are slower while it compiles. Off by default.
        compile_mode: ``torch.compile`` mode: ``default``, or ``reduce-overhead`` (CUDA graphs,
            worth it on a GPU when updates are launch-bound) or ``max-autotune``.
    """

    def __init__(
        self,
        observation_shape: Sequence[int],
        action_low: Sequence[float],
        action_high: Sequence[float],
        encoder_arch: str = "mlp",
        latent_dim: int = 64,
        encoder_hidden_dim: int = 256,
        encoder_channels: int = 32,
        encoder_weights_path: str | None = None,
        encoder_channels_last: bool = False,
        encoder_ckpt: str | None = None,
        freeze_encoder: bool | Literal["trunk"] = False,
        reset_encoder_head: bool = False,
        cache_frame_features: bool = True,
        novelty_ckpt: str | None = None,
        novelty_online: bool = False,
        novelty_lr: float = 1e-3,
        novelty_hidden_dim: int = 256,
        novelty_calibration_updates: int = 1000,
        novelty_fit_sources: list[str] | None = None,
        novelty_batch: int | None = None,
        hidden_dim: int = 256,
        hidden_layers: int = 2,
        unit_head_inputs: bool = False,
        gamma: float = 0.99,
        tau: float = 0.005,
        critic_lr: float = 3e-4,
        actor_lr: float = 3e-4,
        alpha_lr: float = 3e-4,
        init_alpha: float = 0.1,
        target_entropy: float | None = None,
        reward_scale: float = 1.0,
        lambda_init: float = 0.0,
        dual_lr: float = 0.01,
        err_target_init: float = 0.10,
        err_target_final: float = 0.06,
        curriculum_episodes: int = 600,
        finite_check_every: int = 100,
        compile_update: bool = False,
        compile_mode: str = "default",
    ) -> None:
        super().__init__()
        check_scalar("gamma", gamma, ge=0.0, le=1.0)
        check_scalar("tau", tau, ge=0.0, le=1.0)
        for name in ("critic_lr", "actor_lr", "alpha_lr", "init_alpha", "reward_scale"):
            check_scalar(name, locals()[name], gt=0.0)
        check_int("finite_check_every", finite_check_every, ge=1)
        check_scalar("novelty_lr", novelty_lr, gt=0.0)
        if compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {compile_mode!r}")
        if novelty_batch is not None:
            check_int("novelty_batch", novelty_batch, ge=2)
        check_int("novelty_calibration_updates", novelty_calibration_updates, ge=1)
        if novelty_fit_sources is not None and not novelty_online:
            raise ValueError(
                f"novelty_fit_sources={novelty_fit_sources!r} chooses what the online novelty "
                "model trains on; set novelty_online=true too"
            )
        if not (isinstance(freeze_encoder, bool) or freeze_encoder == "trunk"):
            raise ValueError(
                f"freeze_encoder must be one of true, false or 'trunk', got {freeze_encoder!r}"
            )
        if reset_encoder_head and encoder_ckpt is None:
            raise ValueError(
                "reset_encoder_head re-initialises the head of a loaded encoder; set "
                "encoder_ckpt too"
            )
        if len(action_low) != len(action_high) or not len(action_low):
            raise ValueError(f"action_low {action_low} and action_high {action_high} must match")
        self.save_hyperparameters()
        self.automatic_optimization = False

        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        action_dim = low.numel()
        self.encoder = encoder_from_hparams(self.hparams)
        if encoder_ckpt is not None:
            load_encoder_weights(self.encoder, encoder_ckpt)
        if reset_encoder_head:
            for module in self.encoder.head.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        self.encoder.requires_grad_(self.encoder_learns)
        if freeze_encoder == "trunk":
            self.encoder.trunk.requires_grad_(False)
        # From the start: Lightning never calls train() on a fresh module (its loops restore
        # each submodule's mode after evaluation), so train() alone would never run.
        self._keep_frozen_encoder_in_eval_mode()
        self.novelty = build_novelty_model(
            latent_dim, novelty_ckpt, novelty_online, novelty_hidden_dim
        )
        if novelty_ckpt is not None and self.encoder_learns:
            rank_zero_warn(
                "novelty_ckpt scores latents of a fine-tuned encoder, which drift away from the "
                "latents it was trained on; freeze the encoder or use novelty_online=true"
            )
        latent_scale = latent_dim**-0.5 if unit_head_inputs else 1.0
        box = (low, high) if unit_head_inputs else (None, None)
        self.actor = Actor(latent_dim, low, high, hidden_dim, hidden_layers, latent_scale)
        self.critic = TwinCritic(
            latent_dim, action_dim, hidden_dim, hidden_layers, latent_scale, *box
        )
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.nn.Parameter(torch.tensor(float(np.log(init_alpha))))
        self.target_entropy = -float(action_dim) if target_entropy is None else target_entropy

        # The constraint's current state, as buffers so the update reads it without a sync
        # and checkpoints carry it.
        self.register_buffer("lagrange", torch.tensor(float(lambda_init)))
        self.register_buffer("err_target", torch.tensor(float(err_target_init)))
        self.register_buffer("_nonfinite", torch.tensor(False), persistent=False)
        self.dual = DualAscent(lambda_init=lambda_init, eta=dual_lr)
        # Source ids of novelty_fit_sources, resolved from the data module's names at fit start.
        self._novelty_fit_ids: torch.Tensor | None = None
        self.shifts_seen = 0
        # Compiled lazily by the first update; dynamic=False: every batch has the same shape.
        self._compiled_losses = None
        if compile_update:
            self._compiled_losses = torch.compile(self._losses, mode=compile_mode, dynamic=False)

    # ----------------------------------------------------------------- acting

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions (N, A) for a batch of observations (N, *obs_shape) from the envs.

        The encoder acts in eval mode, as Stable-Baselines3 collects rollouts: with BatchNorm
        (R3D-18) in train mode, one env's action would depend on the other envs' clips, and
        acting would move the running statistics that evaluation normalises with.
        """
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            z = self.encoder(torch.as_tensor(obs, device=self.device))
        finally:
            if was_training:
                self.encoder.train()
                self._keep_frozen_encoder_in_eval_mode()
        action = self.actor.deterministic(z) if deterministic else self.actor.sample(z)[0]
        return action.cpu().numpy()

    def on_fit_start(self) -> None:
        self._novelty_fit_ids = self._resolve_novelty_fit_sources()
        if self.novelty is not None:
            # The nested novelty model sums its normaliser statistics over ranks through the
            # trainer's strategy, so every rank normalises latents alike.
            self.novelty.trainer = self.trainer

    def _resolve_novelty_fit_sources(self) -> torch.Tensor | None:
        wanted = self.hparams.novelty_fit_sources
        if wanted is None:
            return None
        names = list(getattr(self.trainer.datamodule, "source_names", None) or ["platform"])
        unknown = [name for name in wanted if name not in names]
        if unknown:
            raise ValueError(
                f"novelty_fit_sources {unknown} are not data sources; the sources are {names}"
            )
        return torch.tensor([names.index(name) for name in wanted], device=self.device)

    def _novelty_fit_weight(self, source: torch.Tensor) -> torch.Tensor | None:
        """1 for the transitions the online novelty model trains on, 0 elsewhere (None: all)."""
        if self._novelty_fit_ids is None:
            return None
        return torch.isin(source, self._novelty_fit_ids).float()

    def on_train_start(self) -> None:
        priority = getattr(self.trainer.datamodule, "replay_priority", "uniform")
        if priority == "novelty" and self.novelty is None:
            raise ValueError(
                "data.replay_priority=novelty needs novelty scores: set model.novelty_online=true "
                "or model.novelty_ckpt=PATH"
            )
        # seed_everything gives every DDP rank the same torch seed; offset the policy noise
        # of ranks > 0 so they explore differently (rank 0 keeps the seeded or restored stream).
        if self.trainer.global_rank > 0:
            torch.manual_seed(torch.initial_seed() + self.trainer.global_rank)

    # ---------------------------------------------------------------- updates

    @property
    def encoder_learns(self) -> bool:
        """Whether the critic loss trains any encoder weight (all of them, or the head)."""
        return self.hparams.freeze_encoder is not True

    @property
    def replay_features(self) -> Literal["clip", "frame"] | None:
        """What replay samples hold instead of pixels, with ``cache_frame_features``: the
        whole frozen encoder's ``clip`` latents, the fixed trunk's ``frame`` features, or
        None (pixels)."""
        hp = self.hparams
        if not hp.cache_frame_features or len(hp.observation_shape) != 4:
            return None
        if hp.freeze_encoder is True:
            return "clip"
        if hp.freeze_encoder == "trunk" and hasattr(self.encoder, "encode_frames"):
            return "frame"
        return None

    def replay_feature_encoder(self) -> ReplayFeatures | None:
        """How the replay should store its frames, or None for pixels.

        ``encode`` runs the fixed part of the encoder on what the replay adds: raw frames
        ``(K, C, H, W)`` through the trunk, or, with the whole encoder frozen, the clips
        ``(K, T, C, H, W)`` those frames end, to ``(K, dim)`` float32. RolloutDataModule hands
        it to :meth:`ReplayBuffer.store_frame_features`.
        """
        kind = self.replay_features
        if kind is None:
            return None
        clip = kind == "clip"
        run = self.encoder if clip else self.encoder.encode_frames

        @torch.no_grad()
        def encode(inputs: np.ndarray) -> np.ndarray:
            return run(torch.as_tensor(inputs, device=self.device)).float().cpu().numpy()

        dim = self.encoder.latent_dim if clip else self.encoder.frame_dim
        return ReplayFeatures(encode, dim, clip)

    def _replay_latent(self, obs: torch.Tensor) -> torch.Tensor:
        """The latent of replayed observations: from pixels, from the trunk's stored frame
        features, or the stored latents themselves."""
        kind = self.replay_features
        if kind == "clip":
            return obs
        if kind == "frame":
            return self.encoder.from_frame_features(obs)
        return self.encoder(obs)

    def train(self, mode: bool = True) -> SACModule:
        super().train(mode)
        self._keep_frozen_encoder_in_eval_mode()
        return self

    def _keep_frozen_encoder_in_eval_mode(self) -> None:
        # A frozen encoder's BatchNorm (R3D-18) uses and keeps its running statistics: in
        # train mode it would normalise by each batch's statistics and update them.
        if self.hparams.freeze_encoder is True:
            self.encoder.eval()
        elif self.hparams.freeze_encoder == "trunk":
            self.encoder.trunk.eval()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        encoder = [p for p in self.encoder.parameters() if p.requires_grad]
        groups = [
            {"params": [*encoder, *self.critic.parameters()], "lr": hp.critic_lr},
            {"params": list(self.actor.parameters()), "lr": hp.actor_lr},
            {"params": [self.log_alpha], "lr": hp.alpha_lr},
        ]
        if hp.novelty_online:
            groups.append({"params": list(self.novelty.denoiser.parameters()), "lr": hp.novelty_lr})
        # Fused Adam: one kernel for every parameter, where the default on CPU loops over them.
        return torch.optim.Adam(groups, fused=True)

    def training_step(self, batch: RolloutBatch, batch_idx: int) -> dict[str, Any]:
        metrics = self.update(batch)
        novelty = metrics.pop("novelty_scores", None)
        # self.log costs milliseconds per call, as much as an update of a small network, so the
        # update metrics are handed to Lightning only on the steps its logger writes anyway.
        if self.global_step % self.trainer.log_every_n_steps == 0:
            self.log_dict(
                {f"train/{k}": v for k, v in metrics.items()}, on_step=True, on_epoch=False
            )
        constraints = self.account_finished_shifts(batch)
        if self.global_step % self.hparams.finite_check_every == 0:
            self.check_finite()
        outputs: dict[str, Any] = {"shift_constraints": constraints}
        if novelty is not None:  # for the EconomicsCallback's pricing of this batch
            self._update_replay_priorities(batch, novelty)
            outputs["novelty"] = novelty
            outputs["novelty_source"] = batch.sample.source[: novelty.shape[0]]
        return outputs

    def _update_replay_priorities(self, batch: RolloutBatch, novelty: torch.Tensor) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if hasattr(datamodule, "update_priorities") and batch.sample.index is not None:
            datamodule.update_priorities(batch.sample.index[: novelty.shape[0]], novelty)

    def update(self, batch: RolloutBatch) -> dict[str, torch.Tensor]:
        """One SAC gradient update on a replay sample; returns detached metrics."""
        hp = self.hparams
        losses = self._losses if self._compiled_losses is None else self._compiled_losses
        total, z_actor, metrics = losses(batch.sample)
        z_scored = z_actor[: hp.novelty_batch] if self.novelty is not None else None
        if hp.novelty_online:
            fit = self._novelty_fit_weight(batch.sample.source[: hp.novelty_batch])
            self.novelty.update_normaliser(z_scored, fit)
            novelty_loss = self.novelty.diffusion_loss(z_scored, weight=fit)
            total = total + novelty_loss

        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(total)
        optimizer.step()
        self._soft_update_target()
        self._nonfinite |= ~torch.isfinite(total)  # checked later, without a sync here

        if self.novelty is not None:
            if hp.novelty_online:
                metrics["novelty_loss"] = novelty_loss.detach()
                if self.global_step < hp.novelty_calibration_updates:
                    self.novelty.update_statistics(z_scored, fit)
            scores = self.novelty.score(z_scored)  # (n,), novelty of the batch's transitions
            metrics["novelty"] = scores.mean()
            metrics["novelty_scores"] = scores
        return metrics

    def _losses(
        self, s: ReplaySample
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """The summed SAC losses of a sample, its detached latents, and detached metrics.

        A pure tensor function of the sample and the module's state (no optimiser, no host
        reads), so ``compile_update`` can hand it to ``torch.compile`` whole.
        """
        hp = self.hparams
        alpha = self.log_alpha.exp().detach()
        penalty = self.lagrange * F.relu(s.err - self.err_target)  # (B,)
        reward = hp.reward_scale * (s.reward - penalty)

        with torch.no_grad():
            z_next = self._replay_latent(s.next_obs)
            next_action, next_log_prob = self.actor.sample(z_next)
            q1_next, q2_next = self.critic_target(z_next, next_action)
            soft_value = torch.min(q1_next, q2_next) - alpha * next_log_prob
            target_q = reward + hp.gamma * (1.0 - s.terminated) * soft_value  # (B,)

        # (B, latent_dim), trained by the critic loss only (unless frozen)
        with torch.set_grad_enabled(self.encoder_learns):
            z = self._replay_latent(s.obs)
        q1, q2 = self.critic(z, s.action)
        if s.weight is None:
            critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        else:  # importance weights of a prioritised draw
            squared = (q1 - target_q).square() + (q2 - target_q).square()
            critic_loss = (s.weight * squared).mean()

        z_actor = z.detach()
        action, log_prob = self.actor.sample(z_actor)
        # The critic as a pure function of detached weights: the actor loss moves the actor only.
        frozen = {k: v.detach() for k, v in self.critic.named_parameters()}
        q1_pi, q2_pi = functional_call(self.critic, frozen, (z_actor, action))
        actor_loss = (alpha * log_prob - torch.min(q1_pi, q2_pi)).mean()
        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()

        total = critic_loss + actor_loss + alpha_loss
        return (
            total,
            z_actor,
            {
                "critic_loss": critic_loss.detach(),
                "actor_loss": actor_loss.detach(),
                "alpha_loss": alpha_loss.detach(),
                "alpha": alpha,
                "q": q1.detach().mean(),
                "entropy": -log_prob.detach().mean(),
                "penalty": penalty.mean(),
            },
        )

    @torch.no_grad()
    def _soft_update_target(self) -> None:
        online = list(self.critic.parameters())
        target = list(self.critic_target.parameters())
        torch._foreach_lerp_(target, online, self.hparams.tau)

    def check_finite(self) -> None:
        """Stop with a clear error once any loss was NaN or inf (one host sync).

        Raised before a checkpoint is written too (:meth:`on_save_checkpoint`), so the last
        checkpoint on disk is the last good one.
        """
        if bool(self._nonfinite):
            raise FloatingPointError(
                f"a SAC loss became NaN or inf by update {self.global_step}; training stopped "
                "and no checkpoint was written after it. Lower the learning rates or "
                "reward_scale, and resume from the last checkpoint."
            )

    # ------------------------------------------------------------- constraint

    def account_finished_shifts(self, batch: RolloutBatch) -> list[tuple[float, float]]:
        """Dual ascent once per finished shift (ECONOMICS.md section 3).

        Under DDP every rank applies the shifts of all ranks, in rank order, so lambda, the
        curriculum and the reward stay identical across ranks. Returns the (error target,
        lambda) in force after each episode of ``batch``, in order, for the economics ledger.
        """
        local = [
            float(error_rate(r.shift.errors, r.shift.attempts))
            for r in batch.episodes
            if r.shift is not None
        ]
        errors, first = self._gather_shift_errors(local)
        after: list[tuple[float, float]] = []  # (target, lambda) after each shift, global order
        for err in errors:
            target = self.err_target_value  # the target this shift was held to
            self.dual.update(err, target)
            self.shifts_seen += 1
            after.append((target, self.dual.value))
        mine = iter(after[first : first + len(local)])
        constraints = [
            next(mine) if r.shift is not None else (self.err_target_value, self.dual.value)
            for r in batch.episodes
        ]
        if errors:
            self._sync_constraint_buffers()
            self.log("train/lambda", self.dual.value, on_step=True, on_epoch=False)
            self.log("train/err_target", self.err_target_value, on_step=True, on_epoch=False)
        if batch.episodes:
            returns = [r.episode_return for r in batch.episodes]
            self.log("train/episode_return", float(np.mean(returns)), on_step=True, on_epoch=False)
        return constraints

    def _gather_shift_errors(self, local: list[float]) -> tuple[list[float], int]:
        """Every rank's finished-shift error rates in rank order, and where this rank's start.

        A collective on every update under DDP (shift counts differ between ranks, so no rank
        can skip it), with one host sync to size the padding; nothing on a single device.
        """
        if self.trainer.world_size == 1:
            return local, 0
        counts = self.all_gather(torch.tensor(len(local), device=self.device))  # (W,)
        counts = counts.tolist()
        width = max(counts)
        if width == 0:
            return [], 0
        padded = torch.zeros(width, dtype=torch.float64, device=self.device)
        padded[: len(local)] = torch.tensor(local, dtype=torch.float64)
        gathered = self.all_gather(padded).tolist()  # (W, width)
        errors = [e for rank, row in enumerate(gathered) for e in row[: counts[rank]]]
        return errors, sum(counts[: self.trainer.global_rank])

    @property
    def err_target_value(self) -> float:
        """The error target for the next shift, from the curriculum."""
        hp = self.hparams
        return float(
            sla_target(
                self.shifts_seen, hp.err_target_init, hp.err_target_final, hp.curriculum_episodes
            )
        )

    def _sync_constraint_buffers(self) -> None:
        # fill_ with a python float: a host-to-device copy, no device-to-host sync.
        self.lagrange.fill_(self.dual.value)
        self.err_target.fill_(self.err_target_value)

    # ------------------------------------------------------------- evaluation

    def validation_step(self, batch: EvalBatch, batch_idx: int) -> None:
        self._log_evaluation(batch, "val")

    def test_step(self, batch: EvalBatch, batch_idx: int) -> None:
        self._log_evaluation(batch, "test")

    def _log_evaluation(self, batch: EvalBatch, stage: str) -> None:
        """Means over the deterministic evaluation episodes, reduced across ranks."""
        episodes = batch.episodes
        metrics = {
            "env_steps": batch.env_steps,
            "episode_return": np.mean([e.episode_return for e in episodes]),
            "profit": np.mean([e.episode_return / e.length for e in episodes]),
        }
        shifts = [e.shift for e in episodes if e.shift is not None]
        if shifts:
            metrics["mpl"] = np.mean([mpl(s.completed, s.hours) for s in shifts])
            if len(batch.source_names) > 1:  # MPL per site (source), e.g. val/mpl/customer_a
                for source, name in enumerate(batch.source_names):
                    own = [e.shift for e in episodes if e.source == source and e.shift]
                    if own:
                        metrics[f"mpl/{name}"] = np.mean([mpl(s.completed, s.hours) for s in own])
            metrics["err_rate"] = np.mean([error_rate(s.errors, s.attempts) for s in shifts])
            metrics["expected_profit"] = np.mean([s.expected_profit for s in shifts])
            metrics["expected_err_rate"] = np.mean(
                [s.expected_errors / max(s.expected_attempts, 1e-12) for s in shifts]
            )
        self.log_dict(
            {f"{stage}/{k}": float(v) for k, v in metrics.items()},
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            batch_size=len(episodes),
        )

    # ---------------------------------------------------------- checkpointing

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.check_finite()
        checkpoint["v2p_sac"] = {
            "dual": self.dual.state_dict(),
            "shifts_seen": self.shifts_seen,
            # Every RNG the run draws from, for exact resume (DESIGN.md).
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy_rng": _numpy_global_state_to_checkpoint(),
            "python_rng": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("v2p_sac")
        if state is None:
            raise ValueError("checkpoint has no 'v2p_sac' entry: it was not written by SACModule")
        self.dual.load_state_dict(state["dual"])
        self.shifts_seen = int(state["shifts_seen"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        np.random.set_state(_numpy_global_state_from_checkpoint(state["numpy_rng"]))  # noqa: NPY002
        random.setstate(_as_tuples(state["python_rng"]))


def _numpy_global_state_to_checkpoint() -> dict[str, Any]:
    # The legacy global generator: V2P draws from its own Generators, but code it calls may not.
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    return {
        "kind": kind,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": pos,
        "has_gauss": has_gauss,
        "gauss": gauss,
    }


def _numpy_global_state_from_checkpoint(state: dict[str, Any]) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return (state["kind"], keys, state["pos"], state["has_gauss"], state["gauss"])


def _as_tuples(value: Any) -> Any:
    """random.setstate needs tuples; a checkpoint round trip may hand back lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def load_encoder_weights(encoder: torch.nn.Module, path: str) -> None:
    """Copy the encoder of checkpoint ``path`` into ``encoder``, which must be the same model."""
    pretrained = load_pretrained_encoder(path)
    mine = (type(encoder).__name__, tuple(encoder.obs_shape), encoder.latent_dim)
    theirs = (type(pretrained).__name__, tuple(pretrained.obs_shape), pretrained.latent_dim)
    if mine != theirs:
        raise ValueError(
            f"encoder_ckpt {path!r} holds a {theirs[0]} for observations {theirs[1]} with "
            f"latent_dim {theirs[2]}, but this model builds a {mine[0]} for {mine[1]} with "
            f"latent_dim {mine[2]}; set encoder_arch and latent_dim to the pretraining run's"
        )
    try:
        encoder.load_state_dict(pretrained.state_dict())
    except RuntimeError as e:
        raise ValueError(
            f"encoder_ckpt {path!r} does not fit this model's encoder (different widths? "
            f"set encoder_channels / encoder_hidden_dim to the pretraining run's): {e}"
        ) from e


@contextlib.contextmanager
def _own_hyperparameters() -> Iterator[None]:
    """Let a LightningModule built inside another's ``__init__`` record its own hparams.

    LightningCLI instantiates the model inside a context that hands the model's config to
    every ``save_hyperparameters()`` call made meanwhile (``_given_hyperparameters`` in
    ``lightning.pytorch.core.mixins.hparams_mixin``), a nested module's included: the novelty
    model would otherwise get SAC's hyper-parameters instead of its own.
    """
    token = _given_hyperparameters.set(None)
    try:
        yield
    finally:
        _given_hyperparameters.reset(token)


def build_novelty_model(
    latent_dim: int, novelty_ckpt: str | None, novelty_online: bool, hidden_dim: int = 256
) -> LatentDiffusionNovelty | None:
    """The novelty model SAC scores its batches with: loaded and frozen, fresh, or none."""
    if novelty_ckpt is not None and novelty_online:
        raise ValueError(
            f"novelty_ckpt={novelty_ckpt!r} and novelty_online=true are exclusive: score with a "
            "trained model, or train one online"
        )
    if novelty_online:
        with _own_hyperparameters():
            return LatentDiffusionNovelty(latent_dim=latent_dim, hidden_dim=hidden_dim)
    if novelty_ckpt is None:
        return None
    model = load_novelty_checkpoint(novelty_ckpt)
    if model.latent_dim != latent_dim:
        raise ValueError(
            f"novelty_ckpt {novelty_ckpt!r} models latents of size {model.latent_dim}, but this "
            f"model's latent_dim is {latent_dim}"
        )
    if not model._calibrated:
        raise ValueError(
            f"novelty_ckpt {novelty_ckpt!r} has no calibration statistics: train it with a "
            "validation set (python cli.py fit --config configs/novelty.yaml) so it can score"
        )
    return model.requires_grad_(False)


def load_novelty_checkpoint(path: str) -> LatentDiffusionNovelty:
    """The denoiser, normaliser and calibration of a novelty checkpoint, without its encoder.

    SAC has its own encoder, so the novelty model's copy (and the file it was read from) is
    not needed: the model is rebuilt from its hyper-parameters with ``latent_dim`` only.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"novelty checkpoint {path!r} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        hparams = dict(checkpoint["hyper_parameters"])
        state = checkpoint["state_dict"]
    except Exception as e:  # a truncated or foreign file fails in many ways
        raise ValueError(f"novelty checkpoint {path!r} is not a readable checkpoint: {e}") from e
    if "score_timesteps" not in hparams or not any(k.startswith("denoiser.") for k in state):
        raise ValueError(f"{path!r} is not a LatentDiffusionNovelty checkpoint")
    latent_dim = int(state["z_mean"].shape[0])
    hparams.update(latent_dim=latent_dim, encoder_ckpt=None, observation_shape=None)
    with _own_hyperparameters():
        model = LatentDiffusionNovelty(**hparams)
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("encoder.")})
    return model
