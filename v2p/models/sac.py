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

The parts around the SAC math live in components of their own: the constraint
(:mod:`v2p.models.constraint`), the encoder's freezing and replay caching
(:mod:`v2p.models.encoder_training`), the novelty model (:mod:`v2p.models.novelty_scoring`),
the evaluation metrics (:mod:`v2p.models.evaluation`) and the global RNG state
(:mod:`v2p.rng_state`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.func import functional_call
from torch.nn import functional as F

from v2p.contracts import (
    PLATFORM,
    AttributionEvaluation,
    EvalBatch,
    PriorityFeedback,
    ReplayFeatures,
    ReplaySample,
    RolloutBatch,
    SiteEvaluator,
    SourceCatalog,
    StepOutputs,
    require,
    source_sites_of,
)
from v2p.encoders import encoder_from_hparams
from v2p.encoders.augment import random_shift
from v2p.models.attribution import AttributionSettings, CounterfactualHeads, build_attribution
from v2p.models.components import Actor, TwinCritic
from v2p.models.constraint import ShiftConstraint, gather_in_rank_order
from v2p.models.encoder_training import EncoderTraining, load_encoder_weights, reset_head
from v2p.models.evaluation import evaluation_metrics, expected_site_mpl
from v2p.models.novelty_features import (
    check_novelty_inputs,
    novelty_feature_dim,
    transition_features,
)
from v2p.models.novelty_scoring import (
    NoveltyScoring,
    build_novelty_model,
    check_novelty_settings,
)
from v2p.models.policy_average import PolicyAverage
from v2p.models.tracin import GradientAttribution, adam_step_scale, per_source_gradients
from v2p.rng_state import capture_global_rng, restore_global_rng
from v2p.validation import check_int, check_scalar

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# State-dict keys of checkpoints written before the constraint became a component.
_LEGACY_KEYS = {"lagrange": "constraint.lagrange", "err_target": "constraint.err_target"}


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
        freeze_encoder, cache_frame_features: which encoder weights learn (``false``: all;
            ``true``: none; ``trunk``: the head only) and whether the replay stores what the
            fixed part makes of each frame (:mod:`v2p.models.encoder_training`).
        reset_encoder_head: re-initialise the head after loading ``encoder_ckpt`` (with
            ``freeze_encoder: trunk``: pretrained features, a fusion learnt for this task).
        augment_shift: DrQ's random shift (Kostrikov et al. 2020) of every replayed clip by
            up to this many pixels in each update, the next clips shifted apart from the
            clips; 0 (the default) trains on the clips as stored. Acting never shifts. Meant
            to keep a critic-trained encoder from memorising a small dataset's clips (such
            as demonstrations drawn into every batch); on the synthetic video it did not
            help with demonstrations and cost 10 points without (docs/benchmarks.md). Needs
            pixels in the replay (clip observations, no cached features).
        novelty_ckpt: a trained :class:`~v2p.models.novelty.LatentDiffusionNovelty` checkpoint
            (frozen) that scores every batch's latents; it must have been trained on this
            encoder's latents, so use it with the same pretrained, frozen encoder.
        novelty_online: instead, train a fresh novelty model on the replay latents of every
            update (one more loss in the same backward pass); it follows a fine-tuned encoder.
        novelty_lr, novelty_hidden_dim: learning rate and denoiser width of the online novelty
            model.
        novelty_calibration_updates, novelty_fit_sources, novelty_batch: how the novelty model
            is calibrated, what it is fitted on and how much of each batch it scores
            (:class:`~v2p.models.novelty_scoring.NoveltyScoring`).
        novelty_inputs: what the novelty model scores: ``observation`` latents, or whole
            ``transition`` s (the latent, action, reward, error rate and next latent,
            :mod:`v2p.models.novelty_features`), which see a site whose dynamics differ
            while it looks the same. A ``novelty_ckpt`` must have been trained on the same.
        hidden_dim, hidden_layers: actor and critic MLPs.
        unit_head_inputs: the actor and critics read the latent at unit norm and the critics
            read actions in ``[-1, 1]`` (:class:`~v2p.models.components.TwinCritic` says why);
            off by default so that checkpoints trained without it load as they were trained.
            Needed with demonstrations from pixels: without it the critics barely read the
            action there and the policy ends careless (docs/benchmarks.md, issue 21).
        critic_layer_norm: LayerNorm in the critics' hidden layers, as RLPD uses with
            demonstrations (``data.demonstrations``) to keep the critics from extrapolating
            to actions the demonstrations never took.
        gamma: discount factor.
        tau: Polyak rate of the target critic.
        policy_average_decay: act deterministically (evaluation, the checkpoint's policy) with
            an exponential moving average of the actor's weights (and the encoder's, when the
            critic trains it), moved ``1 - decay`` of the way after every update
            (:class:`~v2p.models.policy_average.PolicyAverage`); None (the default) acts with
            the online weights. Training and exploration never read the average.
        critic_lr, actor_lr, alpha_lr: learning rates of the three parameter groups.
        init_alpha: initial entropy temperature.
        target_entropy: entropy target; None = -action_dim (SAC paper).
        reward_scale: multiplies the (penalised) reward; profit is O(10) $/hr.
        lambda_init, dual_lr, lambda_kp, lambda_kd, lambda_ema, err_target_init,
            err_target_final, curriculum_episodes: the quality constraint, a PID Lagrangian
            (:class:`~v2p.models.constraint.ShiftConstraint`).
        lambda_skip_warmup: the constraint leaves the warm-up's random-action shifts out of
            the multiplier and the curriculum (``ShiftConstraint``'s ``skip_warmup``).
        finite_check_every: updates between checks that the losses are finite (a host sync).
        compile_update: run the SAC losses (encoder, actor, critics) through ``torch.compile``;
            the first updates are slower while it compiles. Off by default.
        compile_mode: ``torch.compile`` mode: ``default``, or ``reduce-overhead`` (CUDA graphs,
            worth it on a GPU when updates are launch-bound) or ``max-autotune``.
        source_names: names of the data sources the transitions' ``source`` ids index (linked
            from the data module by the CLI).
        attribution: measure each source's contribution to each site's MPL, with
            leave-one-source-out heads trained beside the policy or by first-order gradient
            attribution of its updates (:class:`~v2p.models.attribution.AttributionSettings`,
            ECONOMICS.md section 7.1); None (the default) measures nothing. Needs at least
            two sources.
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
        augment_shift: int = 0,
        novelty_ckpt: str | None = None,
        novelty_online: bool = False,
        novelty_lr: float = 1e-3,
        novelty_hidden_dim: int = 256,
        novelty_calibration_updates: int = 1000,
        novelty_fit_sources: list[str] | None = None,
        novelty_batch: int | None = None,
        novelty_inputs: str = "observation",
        hidden_dim: int = 256,
        hidden_layers: int = 2,
        unit_head_inputs: bool = False,
        critic_layer_norm: bool = False,
        gamma: float = 0.99,
        tau: float = 0.005,
        policy_average_decay: float | None = None,
        critic_lr: float = 3e-4,
        actor_lr: float = 3e-4,
        alpha_lr: float = 3e-4,
        init_alpha: float = 0.1,
        target_entropy: float | None = None,
        reward_scale: float = 1.0,
        lambda_init: float = 0.0,
        dual_lr: float = 20.0,
        err_target_init: float = 0.10,
        err_target_final: float = 0.06,
        curriculum_episodes: int = 600,
        lambda_kp: float = 0.0,
        lambda_kd: float = 0.0,
        lambda_ema: float = 1.0,
        lambda_skip_warmup: bool = False,
        finite_check_every: int = 100,
        compile_update: bool = False,
        compile_mode: str = "default",
        source_names: Sequence[str] | None = None,
        attribution: AttributionSettings | None = None,
    ) -> None:
        super().__init__()
        check_scalar("gamma", gamma, ge=0.0, le=1.0)
        check_scalar("tau", tau, ge=0.0, le=1.0)
        for name in ("critic_lr", "actor_lr", "alpha_lr", "init_alpha", "reward_scale"):
            check_scalar(name, locals()[name], gt=0.0)
        check_scalar("novelty_lr", novelty_lr, gt=0.0)
        if target_entropy is not None:
            check_scalar("target_entropy", target_entropy)
        check_int("finite_check_every", finite_check_every, ge=1)
        check_int("augment_shift", augment_shift, ge=0)
        check_novelty_settings(
            novelty_online, novelty_fit_sources, novelty_batch, novelty_calibration_updates
        )  # here, not in NoveltyScoring: they must hold with no novelty model too
        check_novelty_inputs(novelty_inputs)
        if compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {compile_mode!r}")
        if reset_encoder_head and encoder_ckpt is None:
            raise ValueError(
                "reset_encoder_head re-initialises the head of a loaded encoder; set "
                "encoder_ckpt too"
            )
        if len(action_low) != len(action_high) or not len(action_low):
            raise ValueError(f"action_low {action_low} and action_high {action_high} must match")
        attribution = AttributionSettings.of(attribution)
        if attribution is not None and attribution.method == "gradient" and compile_update:
            # Its per-source gradients differentiate the update's graph a second time, which
            # no test covers through a compiled graph.
            raise ValueError(
                "attribution.method=gradient needs compile_update=false: it differentiates "
                "the update's losses once per source"
            )
        if attribution is not None and attribution.method == "gradient" and policy_average_decay:
            # It splits the evaluated MPL change among the updates that moved the policy; an
            # averaged policy's change lags those updates by its half-life.
            raise ValueError(
                "attribution.method=gradient needs policy_average_decay=None: it attributes "
                "the change of the policy the updates move, not of its average"
            )
        self.save_hyperparameters()
        if attribution is not None:  # a plain dict: checkpoints load with weights_only
            self.hparams["attribution"] = attribution.as_dict()
        self.automatic_optimization = False

        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        action_dim = low.numel()
        self.encoder = encoder_from_hparams(self.hparams)
        if encoder_ckpt is not None:
            load_encoder_weights(self.encoder, encoder_ckpt)
        if reset_encoder_head:
            reset_head(self.encoder)
        self.encoding = EncoderTraining(
            self.encoder, freeze_encoder, cache_frame_features, observation_shape
        )
        if augment_shift and len(observation_shape) != 4:
            raise ValueError(
                f"augment_shift={augment_shift} shifts clip pixels, but the observations are of "
                f"shape {tuple(observation_shape)}, not clips (T, C, H, W)"
            )
        if augment_shift and self.encoding.replay_features:
            raise ValueError(
                f"augment_shift={augment_shift} shifts the replay's clip pixels, but the replay "
                f"stores the frozen encoder's {self.encoding.replay_features} features; set "
                "cache_frame_features=false to augment"
            )
        self.novelty = build_novelty_model(
            novelty_feature_dim(novelty_inputs, latent_dim, action_dim),
            novelty_ckpt,
            novelty_online,
            novelty_hidden_dim,
            inputs=novelty_inputs,
            action_dim=action_dim,
        )
        self.novelty_scoring = (
            None
            if self.novelty is None
            else NoveltyScoring(
                self.novelty,
                novelty_online,
                novelty_fit_sources,
                novelty_batch,
                novelty_calibration_updates,
            )
        )
        if novelty_ckpt is not None and self.encoding.learns:
            rank_zero_warn(
                "novelty_ckpt scores latents of a fine-tuned encoder, which drift away from the "
                "latents it was trained on; freeze the encoder or use novelty_online=true"
            )
        latent_scale = latent_dim**-0.5 if unit_head_inputs else 1.0
        box = (low, high) if unit_head_inputs else (None, None)
        self.actor = Actor(latent_dim, low, high, hidden_dim, hidden_layers, latent_scale)
        self.critic = TwinCritic(
            latent_dim,
            action_dim,
            hidden_dim,
            hidden_layers,
            latent_scale,
            *box,
            layer_norm=critic_layer_norm,
        )
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.policy_average = (
            None
            if policy_average_decay is None
            else PolicyAverage(
                self.actor,
                self.encoder if self.encoding.learns else None,
                policy_average_decay,
            )
        )
        self.log_alpha = torch.nn.Parameter(torch.tensor(float(np.log(init_alpha))))
        self.target_entropy = -float(action_dim) if target_entropy is None else target_entropy
        self.constraint = ShiftConstraint(
            lambda_init,
            dual_lr,
            err_target_init,
            err_target_final,
            curriculum_episodes,
            lambda_kp,
            lambda_kd,
            lambda_ema,
            lambda_skip_warmup,
        )
        self.attribution = build_attribution(
            attribution,
            source_names,
            observation_shape,
            latent_dim,
            low,
            high,
            self._attributed_blocks(),
            gamma=gamma,
            tau=tau,
            init_alpha=init_alpha,
            target_entropy=self.target_entropy,
        )
        self.register_buffer("_nonfinite", torch.tensor(False), persistent=False)
        # Compiled lazily by the first update; dynamic=False: every batch has the same shape.
        self._compiled_losses = None
        if compile_update:
            self._compiled_losses = torch.compile(self._losses, mode=compile_mode, dynamic=False)

    # ----------------------------------------------------------------- acting

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions (N, A) for a batch of observations (N, *obs_shape) from the envs; the
        deterministic ones from the averaged policy when ``policy_average_decay`` is set."""
        encoder, actor = self.encoder, self.actor
        if deterministic and self.policy_average is not None:
            encoder, actor = self.policy_average.encoder(encoder), self.policy_average.actor
        with self.encoding.acting():
            z = encoder(torch.as_tensor(obs, device=self.device))
        action = actor.deterministic(z) if deterministic else actor.sample(z)[0]
        return action.cpu().numpy()

    def replay_feature_encoder(self) -> ReplayFeatures | None:
        """What the replay stores instead of pixels (None: pixels); see
        :meth:`EncoderTraining.replay_feature_encoder`."""
        return self.encoding.replay_feature_encoder(self.device)

    def train(self, mode: bool = True) -> SACModule:
        super().train(mode)
        self.encoding.keep_frozen_in_eval_mode()
        return self

    # ------------------------------------------------------------ fit hooks

    def on_fit_start(self) -> None:
        if self.novelty_scoring is not None:
            datamodule = self.trainer.datamodule
            names = (PLATFORM,)
            if self.novelty_scoring.fit_sources is not None:
                names = require(datamodule, SourceCatalog, "the trainer's datamodule").source_names
            self.novelty_scoring.bind(self.trainer, names, self.device)

    def on_train_start(self) -> None:
        datamodule = self.trainer.datamodule
        if isinstance(datamodule, PriorityFeedback) and datamodule.replay_priority == "novelty":
            if self.novelty is None:
                raise ValueError(
                    "data.replay_priority=novelty needs novelty scores: set "
                    "model.novelty_online=true or model.novelty_ckpt=PATH"
                )
        # A resumed optimiser brings back the learning rates it was saved with; the run's own
        # (which a resume may change, v2p.cli.RESUMABLE_MODEL_ARGS) are the ones that hold.
        for group, lr in zip(self.optimizers().param_groups, self._learning_rates(), strict=True):
            group["lr"] = lr
        # seed_everything gives every DDP rank the same torch seed; offset the policy noise
        # of ranks > 0 so they explore differently. Only on a fresh run: a resumed rank has
        # its own stream back from the checkpoint (RolloutDataModule restores each rank's).
        if self.trainer.global_rank > 0 and self.trainer.ckpt_path is None:
            torch.manual_seed(torch.initial_seed() + self.trainer.global_rank)
        if isinstance(self.attribution, GradientAttribution):
            self._start_gradient_attribution()

    def _learning_rates(self) -> list[float]:
        """Of the optimiser's parameter groups, in order."""
        hp = self.hparams
        rates = [hp.critic_lr, hp.actor_lr, hp.alpha_lr]
        if hp.novelty_online:
            rates.append(hp.novelty_lr)
        if isinstance(self.attribution, CounterfactualHeads):
            rates.append(self.attribution.settings.lr)
        return rates

    def configure_optimizers(self) -> torch.optim.Optimizer:
        encoder = [p for p in self.encoder.parameters() if p.requires_grad]
        params = [[*encoder, *self.critic.parameters()], list(self.actor.parameters())]
        params.append([self.log_alpha])
        if self.hparams.novelty_online:
            params.append(self.novelty.trainable_parameters())
        if isinstance(self.attribution, CounterfactualHeads):
            params.append([p for p in self.attribution.parameters() if p.requires_grad])
        rates = self._learning_rates()
        groups = [{"params": p, "lr": lr} for p, lr in zip(params, rates, strict=True)]
        # Fused Adam: one kernel for every parameter, where the default on CPU loops over them.
        return torch.optim.Adam(groups, fused=True)

    # ---------------------------------------------------------------- updates

    def training_step(self, batch: RolloutBatch, batch_idx: int) -> StepOutputs:
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
        outputs: StepOutputs = {"shift_constraints": constraints}
        if novelty is not None:  # for the EconomicsCallback's pricing of this batch
            datamodule = self.trainer.datamodule if self._trainer is not None else None
            if isinstance(datamodule, PriorityFeedback) and batch.sample.index is not None:
                datamodule.update_priorities(batch.sample.index[: novelty.shape[0]], novelty)
            outputs["novelty"] = novelty
            outputs["novelty_source"] = batch.sample.source[: novelty.shape[0]]
        return outputs

    def update(self, batch: RolloutBatch) -> dict[str, torch.Tensor]:
        """One SAC gradient update on a replay sample; returns detached metrics."""
        losses = self._losses if self._compiled_losses is None else self._compiled_losses
        total, z_actor, z_next, reward, per_sample, metrics = losses(batch.sample)
        attribution = self.attribution
        if isinstance(attribution, CounterfactualHeads):
            total = total + attribution.sample_losses(batch.sample, z_actor, z_next, reward)
        source_gradients = None
        if isinstance(attribution, GradientAttribution) and attribution.due(self.global_step):
            attributed = self._attributed_params()
            source_gradients = per_source_gradients(
                per_sample, batch.sample.source, attribution.num_sources, attributed
            )
        scoring = self.novelty_scoring
        if scoring is not None:
            features = z_actor
            if self.hparams.novelty_inputs == "transition":
                s = batch.sample
                features = transition_features(z_actor, s.action, s.reward, s.err, z_next)
            z_scored = scoring.scored(features)
            fit = None
            if scoring.online:
                source = batch.sample.source[: scoring.batch]
                novelty_loss, fit = scoring.online_loss(z_scored, source)
                total = total + novelty_loss

        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(total)
        optimizer.step()
        self._soft_update_target()
        if self.policy_average is not None:
            self.policy_average.update(self.actor, self.encoder)
        if isinstance(attribution, CounterfactualHeads):
            attribution.soft_update_target()
        if source_gradients is not None:
            step_scale = adam_step_scale(optimizer.optimizer, attributed)
            attribution.record_step(source_gradients, step_scale)
        self._nonfinite |= ~torch.isfinite(total)  # checked later, without a sync here

        if scoring is not None:
            if scoring.online:
                metrics["novelty_loss"] = novelty_loss.detach()
            scores = scoring.after_update(z_scored, fit, self.global_step)  # (n,)
            metrics["novelty"] = scores.mean()
            metrics["novelty_scores"] = scores
        return metrics

    def _losses(
        self, s: ReplaySample
    ) -> tuple[
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        dict[str, torch.Tensor],
    ]:
        """The summed SAC losses of a sample; its detached latents and next latents; the
        (penalised, scaled) reward; each transition's critic and actor loss (B,), whose mean
        is the sum of the two losses (gradient attribution splits it by source); and detached
        metrics.

        A pure tensor function of the sample and the module's state (no optimiser, no host
        reads), so ``compile_update`` can hand it to ``torch.compile`` whole.
        """
        hp = self.hparams
        alpha = self.log_alpha.exp().detach()
        penalty = self.constraint.penalty(s.err)  # (B,)
        reward = hp.reward_scale * (s.reward - penalty)

        obs, next_obs = s.obs, s.next_obs
        if hp.augment_shift:  # each clip its own shift, the next clip apart from it (DrQ)
            obs = random_shift(obs, hp.augment_shift)
            next_obs = random_shift(next_obs, hp.augment_shift)
        with torch.no_grad():
            z_next = self.encoding.replay_latent(next_obs)
            next_action, next_log_prob = self.actor.sample(z_next)
            q1_next, q2_next = self.critic_target(z_next, next_action)
            soft_value = torch.min(q1_next, q2_next) - alpha * next_log_prob
            target_q = reward + hp.gamma * (1.0 - s.terminated) * soft_value  # (B,)

        # (B, latent_dim), trained by the critic loss only (unless frozen)
        with torch.set_grad_enabled(self.encoding.learns):
            z = self.encoding.replay_latent(obs)
        q1, q2 = self.critic(z, s.action)
        squared = (q1 - target_q).square() + (q2 - target_q).square()
        if s.weight is None:
            critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        else:  # importance weights of a prioritised draw
            squared = s.weight * squared
            critic_loss = squared.mean()

        z_actor = z.detach()
        action, log_prob = self.actor.sample(z_actor)
        # The critic as a pure function of detached weights: the actor loss moves the actor only.
        frozen = {k: v.detach() for k, v in self.critic.named_parameters()}
        q1_pi, q2_pi = functional_call(self.critic, frozen, (z_actor, action))
        actor_terms = alpha * log_prob - torch.min(q1_pi, q2_pi)
        actor_loss = actor_terms.mean()
        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()

        total = critic_loss + actor_loss + alpha_loss
        return (
            total,
            z_actor,
            z_next,
            reward,
            squared + actor_terms,
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
        """One multiplier update per finished shift (ECONOMICS.md section 3).

        Under DDP every rank applies the shifts of all ranks, in rank order, so lambda, the
        curriculum and the reward stay identical across ranks. Returns the (error target,
        lambda) in force after each episode of ``batch``, in order, for the economics ledger.
        """
        trainer = self.trainer

        def gather(local: list[float]) -> tuple[list[float], int]:
            world, rank = trainer.world_size, trainer.global_rank
            return gather_in_rank_order(local, world, rank, self.all_gather, self.device)

        constraints, updated = self.constraint.account_episodes(batch.episodes, gather)
        if updated:
            self.log("train/lambda", self.constraint.value, on_step=True, on_epoch=False)
            self.log("train/err_target", self.constraint.target, on_step=True, on_epoch=False)
        if batch.episodes:
            returns = [r.episode_return for r in batch.episodes]
            self.log("train/episode_return", float(np.mean(returns)), on_step=True, on_epoch=False)
        return constraints

    # ------------------------------------------------------------- evaluation

    def validation_step(self, batch: EvalBatch, batch_idx: int) -> None:
        self._log_evaluation(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if self.attribution is None or self.trainer.sanity_checking:
            return
        datamodule = require(self.trainer.datamodule, SiteEvaluator, "the trainer's datamodule")
        names = require(datamodule, SourceCatalog, "the trainer's datamodule").source_names
        if isinstance(self.attribution, CounterfactualHeads):
            evaluation = self.attribution.evaluate(
                datamodule.evaluate, self._attribution_inputs, self.global_step
            )
        else:
            evaluation = self._close_attribution_window(datamodule)
        self.log_dict(
            {f"attribution/{n}": c for n, c in zip(names, evaluation.contributions, strict=True)},
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            batch_size=1,
        )

    # ------------------------------------------------------ gradient attribution

    def _attributed_blocks(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The parameters whose updates gradient attribution splits by source, in the blocks
        of :data:`v2p.models.tracin.BLOCKS`: what the critic loss trains (the encoder, when it
        learns, and the critic), then the actor."""
        encoder = [p for p in self.encoder.parameters() if p.requires_grad]
        return [*encoder, *self.critic.parameters()], list(self.actor.parameters())

    def _attributed_params(self) -> list[torch.Tensor]:
        critic, actor = self._attributed_blocks()
        return critic + actor

    def _start_gradient_attribution(self) -> None:
        """Measure the untrained policy's MPL at every site: the first window's start (a
        resumed run has it back from its checkpoint)."""
        if self.encoding.replay_features is not None:
            raise ValueError(
                "attribution.method=gradient measures the SAC loss on the evaluation envs' "
                "observations, but this replay stores encoder features instead: use "
                "attribution.method=counterfactual, or turn cache_frame_features off"
            )
        datamodule = self.trainer.datamodule
        n = self.attribution.num_sources
        if source_sites_of(datamodule, n) != tuple(range(n)):
            raise ValueError(
                "attribution.method=gradient measures each source at its own sites; "
                "demonstration datasets have none (they are measured at their owner's): use "
                "attribution.method=counterfactual with data.demonstrations"
            )
        if not self.attribution.has_baseline:
            datamodule = require(self.trainer.datamodule, SiteEvaluator, "the datamodule")
            site_mpl = expected_site_mpl(datamodule.evaluate(), self.attribution.num_sources)
            self.attribution.set_baseline(site_mpl, self._mean_over_ranks)

    def _close_attribution_window(self, datamodule: SiteEvaluator) -> AttributionEvaluation:
        """Evaluate the policy at every site, differentiate each site's objective on the
        transitions observed there, and close the gradient attribution's window."""
        return self.attribution.evaluate(
            datamodule.evaluate,
            self._per_transition_losses,
            self._attributed_params(),
            self.optimizers().optimizer,
            self.global_step,
            self._mean_over_ranks,
        )

    def _per_transition_losses(self, sample: ReplaySample) -> torch.Tensor:
        return self._losses(sample)[4]

    def _mean_over_ranks(self, value: torch.Tensor) -> torch.Tensor:
        return self.trainer.strategy.reduce(value, reduce_op="mean")

    @torch.no_grad()
    def _attribution_inputs(self, obs: np.ndarray) -> torch.Tensor:
        """What the attribution heads read of the envs' observations."""
        x = torch.as_tensor(obs, device=self.device)
        if self.attribution.settings.inputs == "observation":
            return x.float()
        with self.encoding.acting():
            return self.encoder(x)

    def test_step(self, batch: EvalBatch, batch_idx: int) -> None:
        self._log_evaluation(batch, "test")

    def _log_evaluation(self, batch: EvalBatch, stage: str) -> None:
        """Means over the deterministic evaluation episodes, reduced across ranks."""
        self.log_dict(
            {f"{stage}/{k}": v for k, v in evaluation_metrics(batch).items()},
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            batch_size=len(batch.episodes),
        )

    # ---------------------------------------------------------- checkpointing

    def _match_policy_average(self, weights: dict[str, torch.Tensor]) -> None:
        """Let a checkpoint load whether or not it was written with ``policy_average_decay``:
        a run that turns averaging on starts its average from the checkpoint's online weights
        (``n_averaged`` 0, so the next update copies them); one that turns it off drops the
        saved average."""
        prefix = "policy_average."
        saved = [k for k in weights if k.startswith(prefix)]
        if self.policy_average is None:
            for key in saved:
                del weights[key]
            if saved:
                rank_zero_info(
                    "the checkpoint's averaged policy is dropped: policy_average_decay is None"
                )
            return
        if saved:
            return
        for key, value in self.policy_average.state_dict().items():
            online = key.removeprefix("average.module.")
            weights[prefix + key] = (
                torch.zeros_like(value) if key == "average.n_averaged" else weights[online]
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.check_finite()
        checkpoint["v2p_sac"] = {**self.constraint.checkpoint_state(), **capture_global_rng()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("v2p_sac")
        if state is None:
            raise ValueError("checkpoint has no 'v2p_sac' entry: it was not written by SACModule")
        weights = checkpoint.get("state_dict", {})
        for old, new in _LEGACY_KEYS.items():
            if old in weights and new not in weights:
                weights[new] = weights.pop(old)
        self._match_policy_average(weights)
        self.constraint.restore(state)
        restore_global_rng(state)
