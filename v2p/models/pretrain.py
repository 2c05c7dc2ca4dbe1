"""Self-supervised pretraining of the clip encoder, and loading it into other modules.

Temporal contrast (MoCo v3 style, on clips): a clip and a clip a few frames later in the same
episode are a positive pair; the other episodes' clips in the batch are negatives, and so are
clips of the same episode at least ``time_negatives_after`` frames away (time-contrastive
learning as TCN, Sermanet et al. 2018, and R3M, Nair et al. 2022, do it). The query is
``predictor(projector(encoder(anchor)))``, the key ``target_projector(target_encoder(positive)))``
from a momentum (EMA) copy, and the loss is a symmetric InfoNCE. Clips of the same episode
nearer than that are neither positives nor negatives (masked out).

Why the same-episode negatives: with negatives from other episodes only, a few long videos
make the task "which video is this", learnt in a few steps from colour and layout alone
(measured on three real videos: accuracy 0.98 by step 18), and nothing about motion or time.
``time_negatives_after=None`` masks every same-episode clip, as before 2026-12-01.
Augmentation (random shift) comes from :class:`~v2p.data.clips.ClipDataModule`.

Optional outcome prediction (``reward_weight > 0``, recordings only): a head predicts the
reward of the action taken at the anchor's newest observation from ``(encoder(anchor),
action)``, as UNREAL's reward prediction (Jaderberg et al. 2016, arXiv:1611.05397) does. Why:
the contrastive task alone encodes every frame of a clip about equally (a clip is matched by
the frames it shares with a later clip, and a clip's newest frames are never in an earlier
one), while a policy acts on what the newest frame shows. Predicting the outcome of the action
makes the latent carry what decides it. Video files have no actions and cannot use it.

Validation reports the InfoNCE loss on unaugmented clips, a linear probe (the R^2 of the
recorded task state predicted from frozen latents, :func:`~v2p.models.probe.linear_probe_r2`)
and ``val/time_retrieval``: how often the encoder's latent of a clip is nearer (cosine) to the
clip 1..max_gap frames later than to every clip of the same episode at least
``RETRIEVAL_MIN_DISTANCE`` frames away, with ``val/time_retrieval_chance`` the rate of a
random guess among those candidates. Telling which video a clip is from does not pass it.

The checkpoint stores the encoder under ``encoder.*`` with the same hyper-parameter names as
:class:`~v2p.models.sac.SACModule`, so :func:`load_pretrained_encoder` reads either.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn as nn
from torch.nn import functional as F

from v2p.checkpoint_file import read_checkpoint
from v2p.encoders import encoder_from_hparams
from v2p.models.probe import linear_probe_r2
from v2p.validation import check_int, check_scalar

ENCODER_HPARAMS = ("encoder_arch", "observation_shape", "latent_dim")
RETRIEVAL_MIN_DISTANCE = 16  # frames between a clip and the distractors of val/time_retrieval


def time_retrieval(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    episode: torch.Tensor,
    time: torch.Tensor,
    gap: torch.Tensor,
    min_distance: int = RETRIEVAL_MIN_DISTANCE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each anchor latent (B, D): whether its positive is nearer (cosine) than every
    distractor, the clips of the batch (anchors and positives) of its episode starting at least
    ``min_distance`` frames from it; and the chance of a random pick, ``1 / (1 + distractors)``.

    Returns (hits, chances, scored), sums over the anchors that have a distractor.
    """
    a, p = F.normalize(anchor.float(), dim=1), F.normalize(positive.float(), dim=1)
    clips = torch.cat([a, p])  # every clip of the batch, as a candidate distractor
    clip_episode = torch.cat([episode, episode])
    clip_time = torch.cat([time, time + gap])
    distractor = (episode[:, None] == clip_episode[None, :]) & (
        (time[:, None] - clip_time[None, :]).abs() >= min_distance
    )  # (B, 2B)
    count = distractor.sum(dim=1)
    similarity = (a @ clips.T).masked_fill(~distractor, float("-inf"))
    hits = (a * p).sum(dim=1) > similarity.max(dim=1).values
    scored = count > 0
    chance = 1.0 / (1.0 + count.float())
    return hits[scored].sum(), chance[scored].sum(), scored.sum()


def projection_head(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.LayerNorm(hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, out_dim),
    )


class EncoderPretrainModule(L.LightningModule):
    """Temporal-contrast pretraining of ``build_encoder(encoder_arch, observation_shape, ...)``.

    Args:
        observation_shape: the clip shape ``(T, C, H, W)`` (linked from the data module).
        encoder_arch, latent_dim, encoder_hidden_dim, encoder_channels, encoder_weights_path,
        encoder_channels_last: the encoder, as in :class:`~v2p.models.sac.SACModule` (same
            names, so a SAC config can load this checkpoint with ``encoder_ckpt``).
        projection_dim: size of the contrastive embedding.
        temperature: InfoNCE temperature.
        momentum: EMA rate of the target encoder and projector (1 = frozen).
        time_negatives_after: clips of the same episode at least this many frames apart are
            negatives (module docstring); None: no same-episode negatives.
        action_dim: size of the recorded actions (linked from the data module; None for
            video files).
        reward_weight: weight of the outcome-prediction loss (module docstring); 0 turns it
            off. The loss is the mean squared error of batch-standardised rewards, so 1 - loss
            is the head's R^2 and the weight does not depend on the reward's units.
        lr, weight_decay: AdamW.
        probe_ridge: ridge strength of the validation linear probe.
    """

    def __init__(
        self,
        observation_shape: Sequence[int],
        encoder_arch: str = "simple2dcnn",
        latent_dim: int = 64,
        encoder_hidden_dim: int = 256,
        encoder_channels: int = 32,
        encoder_weights_path: str | None = None,
        encoder_channels_last: bool = False,
        projection_dim: int = 128,
        temperature: float = 0.1,
        momentum: float = 0.99,
        time_negatives_after: int | None = 16,
        action_dim: int | None = None,
        reward_weight: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        probe_ridge: float = 1e-3,
    ) -> None:
        super().__init__()
        check_scalar("temperature", temperature, gt=0.0)
        check_scalar("momentum", momentum, ge=0.0, le=1.0)
        check_scalar("lr", lr, gt=0.0)
        check_scalar("weight_decay", weight_decay, ge=0.0)
        check_scalar("probe_ridge", probe_ridge, gt=0.0)
        check_scalar("reward_weight", reward_weight, ge=0.0)
        if time_negatives_after is not None:
            check_int("time_negatives_after", time_negatives_after, ge=1)
        if reward_weight > 0 and not action_dim:
            raise ValueError(
                f"reward_weight={reward_weight} needs recorded actions and rewards, but "
                f"action_dim is {action_dim!r}: pretrain on `v2p record` recordings, or set "
                "reward_weight: 0 for video files"
            )
        self.save_hyperparameters()
        self.encoder = encoder_from_hparams(self.hparams)
        self.projector = projection_head(latent_dim, 2 * projection_dim, projection_dim)
        self.predictor = projection_head(projection_dim, 2 * projection_dim, projection_dim)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.reward_head = (
            projection_head(latent_dim + action_dim, 2 * projection_dim, 1)
            if reward_weight > 0
            else None
        )
        self._val_latents: list[torch.Tensor] = []
        self._val_states: list[torch.Tensor] = []
        self._val_episodes: list[torch.Tensor] = []

    # ------------------------------------------------------------------ loss

    def contrastive_loss(
        self,
        anchor: torch.Tensor,
        positive: torch.Tensor,
        episode: torch.Tensor,
        latents: torch.Tensor | None = None,
        time: torch.Tensor | None = None,
        gap: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Symmetric InfoNCE of (anchor, positive) pairs; returns (loss, top-1 accuracy).

        ``latents``: ``encoder(cat([anchor, positive]))`` when the caller already has it.
        ``time`` and ``gap`` (the anchors' first frames and the positives' gaps) make clips of
        one episode ``time_negatives_after`` frames apart negatives; without them, or with
        ``time_negatives_after=None``, every other clip of the episode is masked.
        """
        if latents is None:
            latents = self.encoder(torch.cat([anchor, positive]))
        keys = torch.cat([positive, anchor])
        q = F.normalize(self.predictor(self.projector(latents)), dim=1)
        with torch.no_grad():
            k = F.normalize(self.target_projector(self.target_encoder(keys)), dim=1)
        episodes = torch.cat([episode, episode])
        logits = q @ k.T / self.hparams.temperature  # (2B, 2B); row i's positive is key i
        eye = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
        masked = (episodes[:, None] == episodes[None, :]) & ~eye
        after = self.hparams.get("time_negatives_after")
        if after is not None and time is not None and gap is not None:
            query_time = torch.cat([time, time + gap])
            key_time = torch.cat([time + gap, time])
            masked &= (query_time[:, None] - key_time[None, :]).abs() < after
        logits = logits.masked_fill(masked, float("-inf"))
        labels = torch.arange(logits.shape[0], device=logits.device)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        return loss, accuracy

    def reward_loss(self, z: torch.Tensor, batch: Any) -> torch.Tensor | None:
        """Mean squared error of the predicted, batch-standardised reward of each anchor's
        action from its latent ``z`` (rows with a recorded reward only); None when the batch
        has fewer than two."""
        # Rows with a reward and an action (an action-free recording has NaN actions).
        known = torch.isfinite(batch.reward) & torch.isfinite(batch.action).all(dim=1)
        if int(known.sum()) < 2:  # a host sync, once per step: cheap beside the clip encoder
            return None
        reward = batch.reward[known]
        target = (reward - reward.mean()) / reward.std().clamp_min(1e-6)
        z = z[known]
        predicted = self.reward_head(torch.cat([z, batch.action[known].to(z.dtype)], dim=1))
        return F.mse_loss(predicted.squeeze(1).float(), target)

    def losses(self, batch: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The weighted total (``loss``) and its parts, and the anchors' latents; the online
        encoder runs once per clip for all of them."""
        latents = self.encoder(torch.cat([batch.anchor, batch.positive]))
        z_anchor = latents[: len(batch.anchor)]
        contrast, accuracy = self.contrastive_loss(
            batch.anchor, batch.positive, batch.episode, latents, batch.time, batch.gap
        )
        parts = {"loss": contrast, "contrast": contrast.detach(), "accuracy": accuracy}
        if self.reward_head is not None:
            reward = self.reward_loss(z_anchor, batch)
            if reward is not None:
                parts["loss"] = contrast + self.hparams.reward_weight * reward
                parts["reward_r2"] = 1.0 - reward.detach()
        return parts, z_anchor

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        parts, _ = self.losses(batch)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, prog_bar=True)
        return parts["loss"]

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # The momentum target follows the online networks after every optimiser step.
        online = [*self.encoder.parameters(), *self.projector.parameters()]
        target = [*self.target_encoder.parameters(), *self.target_projector.parameters()]
        with torch.no_grad():
            torch._foreach_lerp_(target, online, 1.0 - self.hparams.momentum)
            for src, dst in zip(
                [*self.encoder.buffers(), *self.projector.buffers()],
                [*self.target_encoder.buffers(), *self.target_projector.buffers()],
                strict=True,
            ):
                dst.copy_(src)  # BatchNorm statistics (R3D-18) follow without averaging

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [
            *self.encoder.parameters(),
            *self.projector.parameters(),
            *self.predictor.parameters(),
        ]
        if self.reward_head is not None:
            params += list(self.reward_head.parameters())
        return torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    # ------------------------------------------------------------ validation

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        parts, z_anchor = self.losses(batch)
        self.log_dict({f"val/{k}": v for k, v in parts.items()}, prog_bar=True)
        z_positive = self.encoder(batch.positive)
        hits, chance, scored = time_retrieval(
            z_anchor, z_positive, batch.episode, batch.time, batch.gap
        )
        self._retrieval += torch.stack([hits.float(), chance, scored.float()])
        self._val_latents.append(z_anchor.float())
        self._val_states.append(batch.state.float())
        self._val_episodes.append(batch.episode)

    def on_validation_epoch_start(self) -> None:
        self._val_latents, self._val_states, self._val_episodes = [], [], []
        self._retrieval = torch.zeros(3, device=self.device)  # hits, chances, anchors scored

    def on_validation_epoch_end(self) -> None:
        if not self._val_latents:
            return
        # Every rank probes the same gathered rows, so the logged value needs no reduction.
        latents, states, episodes = (
            self._flatten_ranks(self.all_gather(torch.cat(rows)))
            for rows in (self._val_latents, self._val_states, self._val_episodes)
        )
        r2 = linear_probe_r2(latents, states, episodes, ridge=self.hparams.probe_ridge)
        if r2 is not None:
            self.log("val/probe_r2", r2, prog_bar=True, sync_dist=False)
        hits, chance, scored = self.trainer.strategy.reduce(self._retrieval, reduce_op="sum")
        if scored > 0:
            self.log("val/time_retrieval", hits / scored, prog_bar=True, sync_dist=False)
            self.log("val/time_retrieval_chance", chance / scored, sync_dist=False)
        self._val_latents, self._val_states, self._val_episodes = [], [], []

    def _flatten_ranks(self, gathered: torch.Tensor) -> torch.Tensor:
        return gathered.flatten(0, 1) if self.trainer.world_size > 1 else gathered

    test_step = validation_step
    on_test_epoch_start = on_validation_epoch_start
    on_test_epoch_end = on_validation_epoch_end


# ---------------------------------------------------------------- loading


def load_pretrained_encoder(path: str | os.PathLike) -> nn.Module:
    """The encoder of a pretraining (or SAC) Lightning checkpoint, with its trained weights.

    The encoder is rebuilt from the checkpoint's hyper-parameters (``encoder_arch``,
    ``observation_shape``, ``latent_dim`` and the width arguments) and loaded strictly.
    Raises FileNotFoundError for a missing file and ValueError for one that is not a readable
    checkpoint or holds no encoder.
    """
    path = os.fspath(path)
    checkpoint = read_checkpoint(path, "encoder checkpoint")
    hparams = checkpoint.get("hyper_parameters") or {}
    missing = [name for name in ENCODER_HPARAMS if name not in hparams]
    if missing:
        raise ValueError(
            f"encoder checkpoint {path!r} has no encoder hyper-parameters {missing}; expected "
            "a checkpoint of EncoderPretrainModule or SACModule"
        )
    # The weights come from the checkpoint: no R3D-18 file is read, and no memory format.
    encoder = encoder_from_hparams(
        {**hparams, "encoder_weights_path": None, "encoder_channels_last": False}
    )
    prefix = "encoder."
    weights = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    if not weights:
        raise ValueError(f"encoder checkpoint {path!r} holds no 'encoder.*' weights")
    try:
        encoder.load_state_dict(weights)
    except RuntimeError as e:
        raise ValueError(f"encoder checkpoint {path!r} does not fit its own encoder: {e}") from e
    return encoder
