"""Novelty of an observation: the denoising error of a diffusion prior over encoder latents.

``LatentDiffusionNovelty`` trains a small epsilon-predicting DDPM (Ho et al. 2020,
arXiv:2006.11239) on the latents ``z`` of the shared, frozen encoder. A latent on the data
manifold is denoised well; one off it is not, so the denoising error at a few fixed noise levels,
z-scored against in-distribution errors, is its novelty (ECONOMICS.md section 7; the same idea as
diffusion-based OOD detection, e.g. Graham et al. 2023, arXiv:2211.07740).

Normalisation. Latents are standardised per dimension with a mean and std fitted on training
latents: either explicitly (:meth:`LatentDiffusionNovelty.fit_normaliser`), or automatically from
running sums over the first ``normaliser_batches`` training batches, then frozen. Both live in
buffers, so checkpoints carry them.

Calibration. :meth:`LatentDiffusionNovelty.score` needs the mean and std of each scoring
timestep's error on in-distribution latents. Validation sets them at the end of every epoch
(once the normaliser is frozen); :meth:`calibrate` sets them from given latents and
:meth:`update_statistics` tracks them as an EMA for online training. Before any of these,
``score`` raises.

Episodes. A shift's novelty is more than its steps': :meth:`episode_statistics` gives each
episode the z of its mean step score (``sqrt(n)`` times the mean over the step score's
calibration spread: standard normal when the steps are independent) and, for transitions, the
z of :class:`~v2p.models.outcome_test.OutcomeResidualTest` (are the shift's summed outcomes what
its actions lead to?), trained beside the denoiser on the same transitions.
:meth:`episode_scores` is the larger of the two, so a shift that looks different and one that
behaves differently are both novel.

Online use (e.g. from SAC, on replay latents): ``loss = novelty.online_loss(z)`` and step an
optimiser over ``novelty.trainable_parameters()`` (or call :meth:`update_online`), then
``novelty.update_statistics(z)`` to keep the z-scoring current.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn as nn
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.models.embeddings import Timesteps
from torch.nn import functional as F

from v2p.models.novelty_features import (
    check_novelty_inputs,
    novelty_feature_dim,
    per_episode_sums,
    transition_features,
    transition_latent_dim,
)
from v2p.models.outcome_test import OutcomeResidualTest

MAX_SCORE_EVALUATIONS = 10  # denoiser evaluations per sample that score() may spend


class ResidualBlock(nn.Module):
    """Pre-norm residual MLP block conditioned on the timestep embedding by addition."""

    def __init__(self, hidden_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim)
        self.fc1 = nn.Linear(hidden_dim, hidden_dim)
        self.time = nn.Linear(hidden_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.fc1(self.norm(h)) + self.time(temb))  # (N, hidden)
        return h + self.fc2(x)


class DenoiserMLP(nn.Module):
    """epsilon(x_t, t): (N, latent_dim) noisy latents and (N,) long timesteps -> (N, latent_dim)."""

    def __init__(
        self, latent_dim: int, hidden_dim: int = 256, num_blocks: int = 3, time_dim: int = 128
    ) -> None:
        super().__init__()
        # The sinusoidal embedding of the diffusers UNets (flip_sin_to_cos, no frequency shift).
        self.time_proj = Timesteps(time_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_mlp = nn.Sequential(
            nn.Linear(time_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim), nn.SiLU()
        )
        self.inp = nn.Linear(latent_dim, hidden_dim)
        self.blocks = nn.ModuleList(ResidualBlock(hidden_dim) for _ in range(num_blocks))
        self.out = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, latent_dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time_mlp(self.time_proj(t).to(x.dtype))  # (N, hidden); Timesteps gives fp32
        h = self.inp(x)  # (N, hidden)
        for block in self.blocks:
            h = block(h, temb)
        return self.out(h)  # (N, latent_dim)


def load_frozen_encoder(path: str) -> nn.Module:
    """The pretrained encoder at ``path``, in eval mode with gradients off."""
    # Imported here so that this module works with latents alone (and before pretraining exists).
    from v2p.models.pretrain import load_pretrained_encoder

    encoder = load_pretrained_encoder(path)
    return encoder.eval().requires_grad_(False)


class LatentDiffusionNovelty(L.LightningModule):
    """A DDPM prior over encoder latents whose denoising error scores novelty.

    Args:
        latent_dim: size of ``z``; optional when ``encoder_ckpt`` gives it (then they must agree).
            With ``inputs: transition`` it is the size of a transition's features.
        inputs: ``observation`` (the latents of clips, from a ClipDataModule) or ``transition``
            (:mod:`v2p.models.novelty_features`: the latent, action, reward, error rate and
            next latent of each step of a :class:`~v2p.data.steps.StepDataModule`, whose
            windows hold a step's clip and the next one).
        action_dim: the size of the actions (linked from the data); transitions need it.
        outcome_hidden_dim: width of the outcome test's regression (transitions only).
        encoder_ckpt: pretraining checkpoint of the frozen encoder (needed to train on clips).
        observation_shape: the data's observation shape (linked by the CLI); must be the
            encoder's ``obs_shape``, or ``(latent_dim,)`` for data that already are latents.
        hidden_dim, num_blocks: width and depth of the residual MLP denoiser.
        num_train_timesteps, beta_schedule: the diffusers ``DDPMScheduler`` noise schedule.
        score_timesteps: the K timesteps whose denoising errors make the score.
        score_draws: fixed noise draws per timestep; ``K * score_draws <= 10`` evaluations.
        score_seed: seed of the fixed scoring noise (so a latent always gets the same score).
        normaliser_batches: training batches whose latents fit the normaliser before it freezes.
        stats_momentum: EMA rate of :meth:`update_statistics`.
        lr, weight_decay: AdamW over the denoiser only.
    """

    def __init__(
        self,
        latent_dim: int | None = None,
        encoder_ckpt: str | None = None,
        observation_shape: Sequence[int] | None = None,
        inputs: str = "observation",
        action_dim: int | None = None,
        hidden_dim: int = 256,
        num_blocks: int = 3,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "squaredcos_cap_v2",
        score_timesteps: Sequence[int] = (10, 50, 150, 300, 500),
        score_draws: int = 2,
        score_seed: int = 0,
        normaliser_batches: int = 50,
        stats_momentum: float = 0.01,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        outcome_hidden_dim: int = 128,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder = None if encoder_ckpt is None else load_frozen_encoder(encoder_ckpt)
        check_novelty_inputs(inputs)
        if inputs == "transition" and action_dim is None:
            raise ValueError(
                "inputs=transition needs action_dim (linked from a StepDataModule) to size "
                "the transitions"
            )
        if inputs == "transition" and self.encoder is not None:
            dim = novelty_feature_dim(inputs, self.encoder.latent_dim, action_dim)
            if latent_dim is not None and latent_dim != dim:
                raise ValueError(
                    f"latent_dim={latent_dim} does not match the transitions of encoder_ckpt "
                    f"{encoder_ckpt!r} and {action_dim}-D actions, which have {dim} features"
                )
            self.latent_dim = dim
            # A StepDataModule's window: the encoder's clip and one frame more.
            t, *frame = self.encoder.obs_shape
            _check_window_shape(observation_shape, (t + 1, *frame), encoder_ckpt)
        else:
            self.latent_dim = _resolve_latent_dim(latent_dim, self.encoder, encoder_ckpt)
            _check_observation_shape(observation_shape, self.encoder, self.latent_dim, encoder_ckpt)
        _check_settings(
            num_train_timesteps, score_timesteps, score_draws, normaliser_batches, stats_momentum
        )

        self.denoiser = DenoiserMLP(self.latent_dim, hidden_dim, num_blocks)
        self.outcome_test = (
            OutcomeResidualTest(
                transition_latent_dim(self.latent_dim, action_dim), action_dim, outcome_hidden_dim
            )
            if inputs == "transition"
            else None
        )
        # clip_sample defaults to True in diffusers and clamps the predicted x0 to [-1, 1] in
        # step(); standardised latents routinely leave that range, so it is off.
        schedule = dict(
            num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule, clip_sample=False
        )
        self.scheduler = DDPMScheduler(**schedule)
        self.sampling_scheduler = DDIMScheduler(**schedule)

        d, k = self.latent_dim, len(score_timesteps)
        # The scoring noise and timesteps: constants recreated from the seed, so not persistent.
        # Every sample uses the same draws, so its score does not depend on its batch.
        gen = torch.Generator().manual_seed(score_seed)
        noise = torch.randn(k * score_draws, d, generator=gen)  # (K*S, D)
        steps = torch.tensor(list(score_timesteps), dtype=torch.long).repeat_interleave(score_draws)
        self.register_buffer("score_noise", noise, persistent=False)  # (K*S, D)
        self.register_buffer("score_t", steps, persistent=False)  # (K*S,) long

        # Normaliser: running sums over training latents, then frozen (module docstring).
        self.register_buffer("z_mean", torch.zeros(d))
        self.register_buffer("z_std", torch.ones(d))
        self.register_buffer("z_sum", torch.zeros(d))
        self.register_buffer("z_sqsum", torch.zeros(d))
        self.register_buffer("z_count", torch.zeros(()))
        self.register_buffer("normaliser_frozen", torch.zeros((), dtype=torch.bool))
        # Calibration: mean and std of each scoring timestep's error on in-distribution latents.
        self.register_buffer("err_mean", torch.zeros(k))
        self.register_buffer("err_std", torch.ones(k))
        # The spread of the step score itself (the mean of K correlated z-scores), which an
        # episode's mean score is measured against.
        self.register_buffer("score_std", torch.ones(()))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))
        # Python mirrors of the two flags, so the hot paths branch without a host sync; they are
        # refreshed from the buffers whenever a state dict is loaded.
        self._normaliser_frozen = False
        self._calibrated = False
        self._normaliser_updates = 0
        self.register_load_state_dict_post_hook(_sync_flags)
        self.register_load_state_dict_pre_hook(_fill_predated_buffers)
        # Moment sums of the validation errors and outcome residuals (see _moment_sums).
        self._val_sums: dict[str, torch.Tensor] = {}
        self._val_generator: torch.Generator | None = None

    # ----------------------------------------------------------------- encoder and latents

    def train(self, mode: bool = True) -> LatentDiffusionNovelty:
        super().train(mode)
        if self.encoder is not None:
            self.encoder.eval()  # frozen: its normalisation layers must not change mode
        return self

    @torch.no_grad()
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, *obs_shape) observations -> (B, latent_dim) latents of the frozen encoder."""
        if self.encoder is None:
            raise RuntimeError(
                "LatentDiffusionNovelty has no encoder; construct it with encoder_ckpt=PATH to "
                "score observations, or pass latents"
            )
        return self.encoder(obs)

    def latents_of(self, batch: Any) -> torch.Tensor:
        """Latents of a batch: a (B, latent_dim) tensor, a 1-tuple of one (TensorDataset), a
        ClipBatch (its ``anchor`` clips are encoded), or with ``inputs: transition`` a
        StepBatch (each window's clip and next clip encoded, with its action and outcome)."""
        transitions = self.hparams.get("inputs", "observation") == "transition"
        is_step, is_clip = hasattr(batch, "frames"), hasattr(batch, "anchor")
        if (is_step or is_clip) and is_step != transitions:
            raise TypeError(
                f"inputs={self.hparams.get('inputs')!r} scores "
                f"{'StepBatch windows' if transitions else 'ClipBatch clips'}, got a "
                f"{type(batch).__name__}: pair configs/novelty_transitions.yaml's model "
                "with a StepDataModule, configs/novelty.yaml's with a ClipDataModule"
            )
        if is_step:
            window = batch.frames
            z, z_next = self.encode(window[:, :-1]), self.encode(window[:, 1:])
            features = transition_features(z, batch.action, batch.reward, batch.cost, z_next)
            if not torch.isfinite(features).all():
                raise ValueError(
                    "transition novelty needs every step's action, reward and cost; this "
                    "recording lacks some (an action-free recording, labelled video, or one "
                    "made before 2026-12-01): record it again with v2p record"
                )
            return features
        if is_clip:
            return self.encode(batch.anchor)  # (B, T, C, H, W) uint8 -> (B, latent_dim)
        if isinstance(batch, list | tuple) and len(batch) == 1:
            batch = batch[0]
        if not isinstance(batch, torch.Tensor):
            raise TypeError(
                f"LatentDiffusionNovelty expects a latent tensor or a ClipBatch, got "
                f"{type(batch).__name__}"
            )
        return self._check_latents("batch", batch)

    def _check_latents(self, name: str, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim or not z.is_floating_point():
            raise ValueError(
                f"{name} must be floating latents of shape (B, {self.latent_dim}), got "
                f"{tuple(z.shape)} {z.dtype}"
            )
        return z

    # ------------------------------------------------------------------------ normaliser

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.z_mean.to(z.dtype)) / self.z_std.to(z.dtype)

    @torch.no_grad()
    def update_normaliser(self, z: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        """Add latents (B, D) to the running sums and refit mean and std (no-op once frozen).

        ``weight`` (B,) of 0s and 1s keeps only some latents (all by default). Under DDP the
        sums are reduced over ranks, so every rank normalises alike."""
        if self._normaliser_frozen:
            return
        z = self._check_latents("z", z).float()
        w = _sample_weights(z, weight)[:, None]  # (B, 1)
        sums = torch.stack([(w * z).sum(0), (w * z.square()).sum(0), w.sum(0).expand(z.shape[1])])
        if self._trainer is not None:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        self.z_sum += sums[0]
        self.z_sqsum += sums[1]
        self.z_count += sums[2, 0]
        # Until a latent has been kept (weight 1), the normaliser stays as it is.
        kept, count = self.z_count > 0, self.z_count.clamp_min(1.0)
        mean = torch.where(kept, self.z_sum / count, self.z_mean)
        second = torch.where(kept, self.z_sqsum / count, self.z_std.square() + self.z_mean.square())
        self._set_normaliser(mean, second)

    @torch.no_grad()
    def fit_normaliser(self, z: torch.Tensor) -> None:
        """Set the normaliser from latents (B >= 2, D) and freeze it."""
        z = self._check_latents("z", z).float()
        if z.shape[0] < 2:
            raise ValueError(f"fit_normaliser needs at least 2 latents, got {z.shape[0]}")
        self._set_normaliser(z.mean(0), z.square().mean(0))
        self.freeze_normaliser()

    def freeze_normaliser(self) -> None:
        self.normaliser_frozen.fill_(True)
        self._normaliser_frozen = True

    def _set_normaliser(self, mean: torch.Tensor, second_moment: torch.Tensor) -> None:
        var = (second_moment - mean.square()).clamp_min(0.0)
        self.z_mean.copy_(mean)
        # A floor so a (nearly) constant latent dimension is not blown up into noise.
        self.z_std.copy_(var.sqrt().clamp_min(1e-3))

    # ------------------------------------------------------------------------- diffusion

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_t | x_0) of the DDPM schedule; ``t`` is (N,) long on x0's device."""
        return self.scheduler.add_noise(x0, noise, t)

    def diffusion_loss(
        self,
        z: torch.Tensor,
        generator: torch.Generator | None = None,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """epsilon-prediction MSE of raw latents (B, D) at uniformly random timesteps; with
        ``weight`` (B,) of 0s and 1s, the mean over the latents of weight 1 (0 if none)."""
        x0 = self.normalise(self._check_latents("z", z))  # (B, D)
        t = torch.randint(
            0,
            self.hparams.num_train_timesteps,
            (x0.shape[0],),
            device=x0.device,
            generator=generator,
        )  # (B,) long
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        prediction = self.denoiser(self.add_noise(x0, noise, t), t)
        if weight is None:
            return F.mse_loss(prediction, noise)
        w = _sample_weights(z, weight)
        per_sample = (prediction - noise).square().mean(-1)  # (B,)
        return (w * per_sample).sum() / w.sum().clamp_min(1.0)

    def outcome_loss(self, z: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The outcome test's regression loss on raw transitions (B, D); 0 for observations."""
        if self.outcome_test is None:
            return z.new_zeros(())
        x = self.normalise(self._check_latents("z", z))
        return self.outcome_test.loss(x, None if weight is None else _sample_weights(z, weight))

    def online_loss(self, z: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """What training minimises on latents (B, D): the diffusion loss, plus the outcome
        test's regression loss for transitions (``weight`` as in :meth:`diffusion_loss`)."""
        return self.diffusion_loss(z, weight=weight) + self.outcome_loss(z, weight)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The denoiser's parameters and the outcome test's: never the frozen encoder's."""
        modules = [self.denoiser] + ([self.outcome_test] if self.outcome_test is not None else [])
        return [p for module in modules for p in module.parameters()]

    def update_online(self, z: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """One gradient step of the denoiser (and outcome test) on latents (B, D), then the
        EMA statistics.

        ``optimizer`` must hold :meth:`trainable_parameters` (see :meth:`configure_optimizers`).
        Returns the detached loss (no host sync)."""
        self.update_normaliser(z.detach())
        loss = self.online_loss(z.detach())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        self.update_statistics(z.detach())
        return loss.detach()

    # --------------------------------------------------------------------------- scoring

    @torch.no_grad()
    def denoising_errors(self, z: torch.Tensor) -> torch.Tensor:
        """Per-sample epsilon MSE at each scoring timestep, (B, K); fixed noise, so deterministic.

        One denoiser call over B * K * score_draws rows (at most 10 per sample)."""
        x0 = self.normalise(self._check_latents("z", z))  # (B, D)
        b, d = x0.shape
        m = self.score_t.shape[0]  # K * S
        noise = self.score_noise.to(x0.dtype).expand(b, m, d).reshape(b * m, d)
        t = self.score_t.repeat(b)  # (B*K*S,) long, sample-major like the rows below
        x0 = x0[:, None, :].expand(b, m, d).reshape(b * m, d)
        err = (self.denoiser(self.add_noise(x0, noise, t), t) - noise).square().mean(-1)
        k = len(self.hparams.score_timesteps)
        return err.view(b, k, self.hparams.score_draws).mean(-1)  # (B, K)

    @torch.no_grad()
    def score(self, z: torch.Tensor) -> torch.Tensor:
        """Novelty of latents (B, D): per-timestep errors z-scored on in-distribution
        latents, averaged over timesteps. (B,), on z's device and dtype; higher = more novel."""
        if not self._calibrated:
            raise RuntimeError(
                "LatentDiffusionNovelty.score needs calibration statistics: run validation "
                "(fit with a val set), call calibrate(z_val) or update_statistics(z) first"
            )
        err = self.denoising_errors(z)  # (B, K)
        zs = (err - self.err_mean.to(err.dtype)) / self.err_std.to(err.dtype)
        return zs.mean(-1)

    @torch.no_grad()
    def score_observations(self, obs: torch.Tensor) -> torch.Tensor:
        """Novelty of observations (B, *obs_shape) through the frozen encoder. (B,)"""
        return self.score(self.encode(obs))

    @torch.no_grad()
    def episode_statistics(self, z: torch.Tensor, episode: torch.Tensor) -> torch.Tensor:
        """(E, 2): each episode's z of its mean step score and its outcome test's z (NaN for
        observations, which have no outcome); ``z`` (N, D) latents of ``episode`` (N,) ids in
        ``0 .. E - 1``. Both are standard normal on in-distribution episodes whose steps are
        independent; higher = more novel."""
        scores = self.score(z)  # (N,)
        if not torch.isfinite(self.score_std):
            raise RuntimeError(
                "this novelty model's calibration predates episode scores (2026-12-02): "
                "calibrate it again (calibrate(z) or a validation run) to score episodes"
            )
        total, count = per_episode_sums(scores.float(), episode)
        appearance = total / count.clamp_min(1).sqrt() / self.score_std  # sqrt(n) x mean / std
        if self.outcome_test is None:
            outcome = torch.full_like(appearance, float("nan"))
        else:
            outcome = self.outcome_test.episode_z(self.normalise(z).float(), episode)
        return torch.stack([appearance, outcome], dim=1).to(z.dtype)

    @torch.no_grad()
    def episode_scores(self, z: torch.Tensor, episode: torch.Tensor) -> torch.Tensor:
        """Novelty (E,) of each episode: the larger of :meth:`episode_statistics`' two z's
        (the mean step score's alone for observations)."""
        return self.episode_statistics(z, episode).nan_to_num(float("-inf")).amax(dim=1)

    @torch.no_grad()
    def calibrate(self, z: torch.Tensor) -> None:
        """Set the z-scoring statistics (and the outcome test's) from in-distribution latents
        (B >= 2, D)."""
        if z.shape[0] < 2:
            raise ValueError(f"calibrate needs at least 2 latents, got {z.shape[0]}")
        self._set_statistics(self.denoising_errors(z).float())
        if self.outcome_test is not None:
            residuals = self.outcome_test.residuals(self.normalise(z).float())
            self.outcome_test.set_moments(residuals.mean(0), torch.cov(residuals.T))

    @torch.no_grad()
    def update_statistics(self, z: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        """EMA (rate ``stats_momentum``) of the per-timestep error mean and variance on
        latents (B >= 2, D), for online training; the first call sets them outright.

        ``weight`` (B,) of 0s and 1s keeps only some latents (all by default). Under DDP the
        batch moments are those of every rank's latents together, so every rank z-scores
        alike (as :meth:`update_normaliser` does for the normaliser)."""
        values = {"errors": self.denoising_errors(z).float()}  # (B, K)
        if self.outcome_test is not None:
            values["residuals"] = self.outcome_test.residuals(self.normalise(z)).float()
        w = _sample_weights(z, weight)
        sums = {name: _moment_sums(x, w) for name, x in values.items()}
        if self._trainer is not None:
            sums = {k: self.trainer.strategy.reduce(v, reduce_op="sum") for k, v in sums.items()}
        # The first batch with a kept latent sets the statistics (rate 1), later ones move
        # them by the EMA rate, and a batch with none leaves them (rate 0): decided on the
        # device, with no host sync.
        kept = sums["errors"][-1, -1] > 0
        rate = torch.where(self.calibrated, self.hparams.stats_momentum, 1.0) * kept
        mean, cov = _moments(sums["errors"])
        std = cov.diagonal().clamp_min(0.0).sqrt().clamp_min(1e-6)
        var = self.err_std.square().lerp(std.square(), rate)
        score_var = torch.nan_to_num(self.score_std.square(), nan=1.0).lerp(
            _score_variance(cov, std), rate
        )
        self.err_mean.lerp_(mean, rate)
        self.err_std.copy_(var.sqrt().clamp_min(1e-6))
        self.score_std.copy_(score_var.sqrt().clamp_min(1e-6))
        if self.outcome_test is not None:
            residual_mean, residual_cov = _moments(sums["residuals"])
            self.outcome_test.update_moments(residual_mean, residual_cov, rate)
        self.calibrated |= kept
        # The Python mirror lets score() run from the first call; until a latent is kept the
        # statistics are the identity (mean 0, std 1).
        self._calibrated = True

    def _set_statistics(self, err: torch.Tensor) -> None:
        """From in-distribution errors (B, K)."""
        self._set_moments(err.mean(0), torch.cov(err.T).reshape(err.shape[1], err.shape[1]))

    def _set_moments(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        """From the errors' mean (K,) and covariance (K, K)."""
        std = cov.diagonal().clamp_min(0.0).sqrt().clamp_min(1e-6)
        self.err_mean.copy_(mean)
        self.err_std.copy_(std)
        self.score_std.copy_(_score_variance(cov, std).sqrt())
        self.calibrated.fill_(True)
        self._calibrated = True

    # -------------------------------------------------------------------------- sampling

    @torch.no_grad()
    def sample(
        self, num_samples: int, num_inference_steps: int = 50, seed: int | None = None
    ) -> torch.Tensor:
        """Latents (N, D) drawn from the prior with DDIM (eta = 0), in the encoder's scale."""
        sched = self.sampling_scheduler
        sched.set_timesteps(num_inference_steps, device=self.device)  # step() needs it first
        gen = None if seed is None else torch.Generator(self.device).manual_seed(seed)
        x = torch.randn(num_samples, self.latent_dim, device=self.device, generator=gen)
        x = x.to(self.z_mean.dtype)
        for t in sched.timesteps:
            eps = self.denoiser(x, t.expand(num_samples).to(self.device))
            x = sched.step(eps, t, x).prev_sample
        return x * self.z_std + self.z_mean

    # ------------------------------------------------------------------------- Lightning

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # The denoiser only: the encoder is frozen and not the novelty model's to train.
        return torch.optim.AdamW(
            self.trainable_parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        z = self.latents_of(batch)
        if not self._normaliser_frozen:
            self.update_normaliser(z)
            self._normaliser_updates += 1
            if self._normaliser_updates >= self.hparams.normaliser_batches:
                self.freeze_normaliser()
        loss = self.diffusion_loss(z)
        self.log("train/loss", loss, prog_bar=True, batch_size=z.shape[0])
        if self.outcome_test is None:
            return loss
        outcome = self.outcome_loss(z)
        self.log("train/outcome_loss", outcome, batch_size=z.shape[0])
        return loss + outcome

    def on_validation_epoch_start(self) -> None:
        # Fixed timesteps and noise every epoch, so val/loss compares epochs and picks the best.
        self._val_generator = torch.Generator(self.device).manual_seed(self.hparams.score_seed)
        self._val_sums = {}

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        z = self.latents_of(batch)
        loss = self.diffusion_loss(z, generator=self._val_generator)
        self.log("val/loss", loss, prog_bar=True, batch_size=z.shape[0])
        values = {"errors": self.denoising_errors(z).float()}  # (B, K)
        if self.outcome_test is not None:
            values["residuals"] = self.outcome_test.residuals(self.normalise(z)).float()
            self.log("val/outcome_loss", values["residuals"].square().mean(), batch_size=len(z))
        for name, x in values.items():
            sums = _moment_sums(x)
            self._val_sums[name] = sums + self._val_sums[name] if name in self._val_sums else sums

    def on_validation_epoch_end(self) -> None:
        # Calibrate only on a frozen normaliser: before that (e.g. the sanity check) the errors
        # are of a model whose input scale is still moving.
        if not self._val_sums or not self._normaliser_frozen:
            return
        # Sums, not the errors themselves, cross ranks: ranks may hold different numbers of
        # validation clips, which all_gather would not accept.
        moments = {
            name: _moments(self.trainer.strategy.reduce(sums, reduce_op="sum"))
            for name, sums in self._val_sums.items()
        }
        self._val_sums = {}
        self._set_moments(*moments["errors"])
        if self.outcome_test is not None:
            self.outcome_test.set_moments(*moments["residuals"])


def _moment_sums(x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """(C + 1, C + 1): the outer products of the rows of ``x`` (N, C) with a 1 appended,
    summed (over the rows of ``weight`` (N,) 1, of 0s and 1s); so its last column holds the
    rows' sum and count, the rest the sum of their outer products."""
    augmented = torch.cat([x, x.new_ones(len(x), 1)], dim=1)
    kept = augmented if weight is None else augmented * weight[:, None]
    return kept.T @ augmented


def _moments(sums: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean (C,) and sample covariance (C, C) of :func:`_moment_sums`' rows (zeros
    where it counts none)."""
    outer, total, count = sums[:-1, :-1], sums[:-1, -1], sums[-1, -1]
    mean = total / count.clamp_min(1.0)
    cov = (outer - count * mean[:, None] * mean[None, :]) / (count - 1).clamp_min(1.0)
    return mean, cov


def _score_variance(cov: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """The variance of the step score, the mean of K z-scored errors of covariance ``cov``
    (K, K) and spreads ``std`` (K,): the mean of their correlations."""
    return (cov / std[:, None] / std[None, :]).mean().clamp_min(0.0)


def _sample_weights(z: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """``weight`` as float (B,) on ``z``'s device, or ones."""
    if weight is None:
        return z.new_ones(z.shape[0], dtype=torch.float32)
    if weight.shape != z.shape[:1]:
        raise ValueError(f"weight must have shape ({z.shape[0]},), got {tuple(weight.shape)}")
    return weight.to(z.device, torch.float32)


def _sync_flags(module: nn.Module, incompatible_keys: Any) -> None:
    """Refresh the Python flag mirrors after load_state_dict (one host read, at load time)."""
    del incompatible_keys
    if isinstance(module, LatentDiffusionNovelty):
        module._normaliser_frozen = bool(module.normaliser_frozen)
        module._calibrated = bool(module.calibrated)


def _fill_predated_buffers(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any
) -> None:
    """A state dict saved before 2026-12-02 lacks the step score's spread: load it as NaN,
    which :meth:`LatentDiffusionNovelty.episode_statistics` refuses until recalibrated (its
    step scores are unaffected)."""
    del module, args
    if prefix + "err_std" in state_dict and prefix + "score_std" not in state_dict:
        state_dict[prefix + "score_std"] = torch.tensor(float("nan"))


def _resolve_latent_dim(
    latent_dim: int | None, encoder: nn.Module | None, encoder_ckpt: str | None
) -> int:
    if encoder is None:
        if latent_dim is None:
            raise ValueError(
                "LatentDiffusionNovelty needs latent_dim or encoder_ckpt (a pretrained encoder "
                "checkpoint, e.g. --model.encoder_ckpt=PATH); got neither"
            )
    elif latent_dim is not None and latent_dim != encoder.latent_dim:
        raise ValueError(
            f"latent_dim={latent_dim} does not match the encoder of encoder_ckpt "
            f"{encoder_ckpt!r}, whose latent_dim is {encoder.latent_dim}"
        )
    dim = int(encoder.latent_dim if encoder is not None else latent_dim)
    if dim <= 0:
        raise ValueError(f"latent_dim must be positive, got {dim}")
    return dim


def _check_observation_shape(
    observation_shape: Sequence[int] | None,
    encoder: nn.Module | None,
    latent_dim: int,
    encoder_ckpt: str | None,
) -> None:
    if observation_shape is None:
        return
    shape = tuple(int(s) for s in observation_shape)
    if encoder is not None:
        if shape != tuple(encoder.obs_shape):
            raise ValueError(
                f"observation_shape {shape} of the data does not match the encoder of "
                f"encoder_ckpt {encoder_ckpt!r}, which expects {tuple(encoder.obs_shape)}"
            )
    elif shape != (latent_dim,):
        raise ValueError(
            f"the data yields observations of shape {shape}, which need an encoder: pass "
            f"encoder_ckpt=PATH (--model.encoder_ckpt=PATH) of a pretrained encoder, or give "
            f"latents of shape ({latent_dim},)"
        )


def _check_window_shape(
    observation_shape: Sequence[int] | None, window: tuple[int, ...], encoder_ckpt: str | None
) -> None:
    """Transitions are read from a StepDataModule's windows: the encoder's clip and one frame
    more."""
    if observation_shape is not None and tuple(int(s) for s in observation_shape) != window:
        raise ValueError(
            f"observation_shape {tuple(observation_shape)} of the data is not the window "
            f"{window} that transitions of encoder_ckpt {encoder_ckpt!r} need (its clip and one "
            f"frame more: StepDataModule clip_len {window[0] - 1})"
        )


def _check_settings(
    num_train_timesteps: int,
    score_timesteps: Sequence[int],
    score_draws: int,
    normaliser_batches: int,
    stats_momentum: float,
) -> None:
    if num_train_timesteps < 2:
        raise ValueError(f"num_train_timesteps must be >= 2, got {num_train_timesteps}")
    steps = list(score_timesteps)
    if not steps or any(not 0 <= int(t) < num_train_timesteps for t in steps):
        raise ValueError(
            f"score_timesteps must be a non-empty list in [0, {num_train_timesteps}), got {steps}"
        )
    if score_draws < 1 or len(steps) * score_draws > MAX_SCORE_EVALUATIONS:
        raise ValueError(
            f"score_timesteps x score_draws = {len(steps)} x {score_draws} denoiser evaluations "
            f"per sample; at most {MAX_SCORE_EVALUATIONS} are allowed (score_draws >= 1)"
        )
    if normaliser_batches < 1:
        raise ValueError(f"normaliser_batches must be >= 1, got {normaliser_batches}")
    if not 0.0 < stats_momentum <= 1.0:
        raise ValueError(f"stats_momentum must be in (0, 1], got {stats_momentum}")
