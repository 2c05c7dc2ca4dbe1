"""`build_encoder`: one encoder from an arch name and the observation shape."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn as nn

from v2p.encoders.mlp import MLPEncoder
from v2p.encoders.video import R3D18Encoder, Simple2DCNN, Simple3DCNN

ENCODER_ARCHS: tuple[str, ...] = ("mlp", "simple2dcnn", "simple3dcnn", "r3d18")


def build_encoder(
    arch: str,
    obs_shape: Sequence[int],
    latent_dim: int = 64,
    hidden_dim: int = 256,
    channels: int = 32,
    weights_path: str | None = None,
    channels_last: bool = False,
) -> nn.Module:
    """Encoder for observations of `obs_shape`: `(obs_dim,)` for mlp, `(T, C, H, W)` otherwise.

    `hidden_dim` is used by mlp only, `channels` by the simple CNNs, `weights_path` by r3d18,
    `channels_last` (channels-last memory format for the convolutions) by the clip encoders.
    Every encoder has `latent_dim` and `obs_shape` attributes, maps `(B, *obs_shape)` to
    `(B, latent_dim)`, and splits into a `trunk` (the feature extractor) and a `head` (the last
    Linear + LayerNorm that makes the latent); together they hold every parameter.
    """
    if arch not in ENCODER_ARCHS:
        raise ValueError(
            f"unknown encoder arch {arch!r}; expected one of {', '.join(ENCODER_ARCHS)}"
        )
    shape = tuple(int(d) for d in obs_shape)
    if latent_dim <= 0:
        raise ValueError(f"latent_dim must be positive, got {latent_dim}")
    if weights_path is not None and arch != "r3d18":
        raise ValueError(
            f"weights_path is only read by arch 'r3d18', got weights_path={weights_path!r} "
            f"with arch {arch!r}"
        )

    if arch == "mlp":
        if len(shape) != 1:
            raise ValueError(
                f"arch 'mlp' needs a 1-D observation, got shape {shape}; "
                f"use simple2dcnn, simple3dcnn or r3d18 for clips"
            )
        return MLPEncoder(shape[0], latent_dim=latent_dim, hidden_dim=hidden_dim)

    if len(shape) != 4:
        raise ValueError(
            f"arch {arch!r} needs a 4-D clip observation (T, C, H, W), got shape {shape}; "
            f"use mlp for 1-D state vectors"
        )
    clip_shape = (shape[0], shape[1], shape[2], shape[3])
    if arch == "simple2dcnn":
        return Simple2DCNN(clip_shape, latent_dim, channels, channels_last=channels_last)
    if arch == "simple3dcnn":
        return Simple3DCNN(clip_shape, latent_dim, channels, channels_last=channels_last)
    return R3D18Encoder(clip_shape, latent_dim, weights_path, channels_last=channels_last)


def encoder_from_hparams(hparams: Mapping[str, Any]) -> nn.Module:
    """The encoder a module's hyper-parameters describe, with the names SACModule and
    EncoderPretrainModule share: ``encoder_arch``, ``observation_shape``, ``latent_dim`` and
    the optional ``encoder_hidden_dim``, ``encoder_channels``, ``encoder_weights_path``,
    ``encoder_channels_last``."""
    return build_encoder(
        hparams["encoder_arch"],
        hparams["observation_shape"],
        latent_dim=hparams["latent_dim"],
        hidden_dim=hparams.get("encoder_hidden_dim", 256),
        channels=hparams.get("encoder_channels", 32),
        weights_path=hparams.get("encoder_weights_path"),
        channels_last=hparams.get("encoder_channels_last", False),
    )
