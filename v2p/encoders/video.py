"""Clip encoders: `(B, T, C, H, W)` uint8 or [0, 1] float -> `(B, latent_dim)`."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping

import torch
import torch.nn as nn
from torchvision.models.video import R3D_18_Weights, r3d_18

from v2p.encoders.common import (
    check_clip_shape,
    check_obs_shape,
    check_positive,
    clip_to_unit_float,
    format_obs_shape,
)

# (kernel, stride) of each spatial convolution, no padding. Simple2DCNN runs on all B*T frames,
# so it opens with a 4x4 stride-4 patch stem (in the spirit of the Nature-DQN CNN's 8x8 stride-4
# first layer): 64x64 frames become 16x16 maps at once, about 5x fewer multiply-adds per frame
# than stride-2 3x3 layers, which is what makes video SAC trainable on a CPU. 64x64 frames leave
# 5x5 maps, so the fusion Linear stays small (8 frames x 32 ch x 25 = 6400 inputs).
_FRAME_LAYERS = ((4, 4), (3, 2), (3, 1))
# Simple3DCNN: 3x3x3 kernels; three spatial stride-2 layers; time halved twice, with temporal
# padding 1 so that T >= 1 works for any clip length.
_CLIP_LAYERS = ((3, 2), (3, 2), (3, 2), (3, 1))
_TEMPORAL_STRIDES = (1, 2, 2, 1)

# torchvision's video classification references (Kinetics-400 statistics of [0, 1] RGB frames).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


def _min_frame_size(layers: tuple[tuple[int, int], ...]) -> int:
    """Smallest H (or W) that leaves a 1x1 map after ``layers`` of (kernel, stride)."""
    size = 1
    for kernel, stride in reversed(layers):
        size = (size - 1) * stride + kernel
    return size


def _check_frame_size(
    owner: str, clip_shape: tuple[int, int, int, int], layers: tuple[tuple[int, int], ...]
) -> None:
    _, _, h, w = clip_shape
    min_size = _min_frame_size(layers)
    if min(h, w) < min_size:
        raise ValueError(
            f"{owner} needs frames of at least {min_size}x{min_size} pixels for its "
            f"{len(layers)} convolutions ((kernel, stride) = {layers}), got clip_shape {clip_shape}"
        )


class Simple2DCNN(nn.Module):
    """Per-frame 2D CNN over all B*T frames at once, then order-preserving temporal fusion.

    ``channels_last`` runs the convolutions in NHWC memory format (faster with cuDNN on
    tensor cores, typically under bf16 autocast).
    """

    def __init__(
        self,
        clip_shape: tuple[int, int, int, int],
        latent_dim: int = 64,
        channels: int = 32,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        clip_shape = check_clip_shape("Simple2DCNN", clip_shape)
        check_positive("Simple2DCNN", latent_dim=latent_dim, channels=channels)
        _check_frame_size("Simple2DCNN", clip_shape, _FRAME_LAYERS)
        self.obs_shape: tuple[int, ...] = clip_shape
        self.latent_dim = latent_dim
        t, c, h, w = clip_shape

        layers: list[nn.Module] = []
        in_channels = c
        for kernel, stride in _FRAME_LAYERS:
            layers += [nn.Conv2d(in_channels, channels, kernel, stride=stride), nn.ReLU()]
            in_channels = channels
        self.convs = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            frame_dim = self.convs(torch.zeros(1, c, h, w)).shape[1]  # channels * h' * w'
        self.frame_dim: int = frame_dim
        # Fusion by concatenation, not by pooling over T: frame i always lands in the same slice
        # of the Linear's input, so the latent knows which frame is the newest (and can read
        # motion from the differences), as with DQN/DrQ frame stacking. Mean/max over T would not.
        self.fuse = nn.Sequential(nn.Linear(t * frame_dim, latent_dim), nn.LayerNorm(latent_dim))
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.convs.to(memory_format=self.memory_format)

    @property
    def trunk(self) -> nn.Module:
        """The per-frame CNN: what ``freeze_encoder="trunk"`` keeps fixed."""
        return self.convs

    @property
    def head(self) -> nn.Module:
        """The temporal fusion (Linear + LayerNorm) that maps frame features to the latent."""
        return self.fuse

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """The trunk alone, frame by frame: ``(K, C, H, W)`` -> ``(K, frame_dim)``.

        A frozen trunk's output for a frame never changes, so a replay can store it in place of
        the pixels (SAC's ``cache_frame_features``) and skip the CNN in every update.
        """
        if frames.dim() != 4 or tuple(frames.shape[1:]) != self.obs_shape[1:]:
            raise ValueError(
                f"Simple2DCNN.encode_frames expects frames of shape "
                f"{format_obs_shape(self.obs_shape[1:])}, got {tuple(frames.shape)}"
            )
        x = clip_to_unit_float("Simple2DCNN", frames, self.convs[0].weight.dtype)
        return self.convs(x.contiguous(memory_format=self.memory_format))

    def from_frame_features(self, features: torch.Tensor) -> torch.Tensor:
        """The head on per-frame trunk features: ``(B, T, frame_dim)`` -> ``(B, latent_dim)``."""
        expected = (self.obs_shape[0], self.frame_dim)
        if features.dim() != 3 or tuple(features.shape[1:]) != expected:
            raise ValueError(
                f"Simple2DCNN.from_frame_features expects frame features of shape "
                f"{format_obs_shape(expected)}, got {tuple(features.shape)} (pixels from a "
                "replay that does not store frame features?)"
            )
        # Frame-major, oldest frame first: frame i always lands in the same slice of fuse.
        return self.fuse(features.reshape(features.shape[0], -1))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        check_obs_shape("Simple2DCNN", clip, self.obs_shape)
        b, t, c, h, w = clip.shape
        features = self.encode_frames(clip.reshape(b * t, c, h, w))  # (B*T, frame_dim)
        return self.from_frame_features(features.reshape(b, t, -1))  # (B, latent_dim)


class Simple3DCNN(nn.Module):
    """3D convolutions over (C, T, H, W), then Linear + LayerNorm.

    ``channels_last`` runs the convolutions in NDHWC memory format (``channels_last_3d``).
    """

    def __init__(
        self,
        clip_shape: tuple[int, int, int, int],
        latent_dim: int = 64,
        channels: int = 32,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        clip_shape = check_clip_shape("Simple3DCNN", clip_shape)
        check_positive("Simple3DCNN", latent_dim=latent_dim, channels=channels)
        _check_frame_size("Simple3DCNN", clip_shape, _CLIP_LAYERS)
        self.obs_shape: tuple[int, ...] = clip_shape
        self.latent_dim = latent_dim
        t, c, h, w = clip_shape

        layers: list[nn.Module] = []
        in_channels = c
        for t_stride, (kernel, s_stride) in zip(_TEMPORAL_STRIDES, _CLIP_LAYERS, strict=True):
            conv = nn.Conv3d(
                in_channels,
                channels,
                kernel,
                stride=(t_stride, s_stride, s_stride),
                padding=(1, 0, 0),
            )
            layers += [conv, nn.ReLU()]
            in_channels = channels
        # Flatten keeps the remaining time steps in fixed slots, so the head stays order-aware.
        self.convs = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            flat_dim = self.convs(torch.zeros(1, c, t, h, w)).shape[1]  # channels * t' * h' * w'
        self.head = nn.Sequential(nn.Linear(flat_dim, latent_dim), nn.LayerNorm(latent_dim))
        self.memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
        self.convs.to(memory_format=self.memory_format)

    @property
    def trunk(self) -> nn.Module:
        """The 3D convolutions; ``head`` (Linear + LayerNorm) maps their output to the latent."""
        return self.convs

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        check_obs_shape("Simple3DCNN", clip, self.obs_shape)
        x = clip_to_unit_float("Simple3DCNN", clip, self.convs[0].weight.dtype)  # (B, T, C, H, W)
        x = x.permute(0, 2, 1, 3, 4).contiguous(memory_format=self.memory_format)
        x = self.convs(x)  # (B, C, T, H, W) -> (B, flat_dim)
        return self.head(x)  # (B, latent_dim)


class R3D18Encoder(nn.Module):
    """torchvision's 3D ResNet-18 (Tran et al. 2018) with a latent head; optional local weights.

    The backbone is built with `weights=None`, so torchvision never downloads. Kinetics-400
    weights were trained on 16-frame 112x112 clips; other sizes run (adaptive pooling) but
    transfer best near that.
    """

    def __init__(
        self,
        clip_shape: tuple[int, int, int, int],
        latent_dim: int = 64,
        weights_path: str | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        clip_shape = check_clip_shape("R3D18Encoder", clip_shape)
        check_positive("R3D18Encoder", latent_dim=latent_dim)
        if clip_shape[1] != 3:
            raise ValueError(
                f"R3D18Encoder needs RGB clips (C = 3, as in Kinetics-400), "
                f"got clip_shape {clip_shape}"
            )
        self.obs_shape: tuple[int, ...] = clip_shape
        self.latent_dim = latent_dim

        # Read the file before building the 33M-parameter backbone, so a bad file fails fast.
        state = None if weights_path is None else _read_state_dict(weights_path)
        self.backbone = r3d_18(weights=None)
        # fc (512 -> 400 Kinetics classes) is replaced by `head`, kept outside the backbone so
        # backbone.state_dict() is exactly the part shared with pretrained r3d_18 weights.
        feature_dim = self.backbone.fc.in_features  # 512
        self.backbone.fc = nn.Identity()
        if state is not None:
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            problems = _state_dict_problems(state, expected=self.backbone.state_dict())
            if problems:
                raise ValueError(
                    f"R3D18Encoder weights_path {weights_path!r} does not fit torchvision's "
                    f"r3d_18 (fc.* ignored): {'; '.join(problems)}"
                )
            # strict=False only admits the missing BatchNorm num_batches_tracked counters that
            # _state_dict_problems lets through; any other misfit was rejected above.
            self.backbone.load_state_dict(state, strict=False)
        self.head = nn.Sequential(nn.Linear(feature_dim, latent_dim), nn.LayerNorm(latent_dim))

        # Constants, not state: non-persistent, so checkpoints do not carry them.
        mean = torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1)
        std = torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)  # (1, C, 1, 1, 1)
        self.register_buffer("std", std, persistent=False)  # (1, C, 1, 1, 1)
        self.memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
        self.backbone.to(memory_format=self.memory_format)

    @property
    def trunk(self) -> nn.Module:
        """The R3D-18 backbone; ``head`` (Linear + LayerNorm) maps its 512 features to z."""
        return self.backbone

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        check_obs_shape("R3D18Encoder", clip, self.obs_shape)
        x = clip_to_unit_float("R3D18Encoder", clip, self.mean.dtype)  # (B, T, C, H, W)
        x = x.permute(0, 2, 1, 3, 4)  # (B, C, T, H, W), torchvision's video layout
        x = ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)
        return self.head(self.backbone(x))  # (B, 512) -> (B, latent_dim)


def _read_state_dict(path: str) -> Mapping[str, torch.Tensor]:
    """A dict of tensors saved with torch.save at `path`; errors name the path."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"R3D18Encoder weights_path {path!r} does not exist. It should be an r3d_18 "
            f"state_dict saved with torch.save, e.g. torchvision's "
            f"R3D_18_Weights.KINETICS400_V1 ({R3D_18_Weights.KINETICS400_V1.url}), downloaded "
            f"on a machine with internet access and copied here."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError) as err:
        raise ValueError(
            f"R3D18Encoder weights_path {path!r} could not be read by "
            f"torch.load(weights_only=True) ({type(err).__name__}); expected an r3d_18 "
            f"state_dict saved with torch.save"
        ) from err
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ValueError(
            f"R3D18Encoder weights_path {path!r} holds a {type(state).__name__}, expected an "
            f"r3d_18 state_dict (a dict of tensors)"
        )
    return state


def _state_dict_problems(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> list[str]:
    """Missing, unexpected and misshaped keys of `state`, first few of each; [] if it fits.

    Missing BatchNorm `num_batches_tracked` counters are not problems: they count updates and
    hold no weights, and older checkpoints lack them.
    """
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {tuple(v.shape)} != {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    return [
        f"{len(keys)} {kind} (first: {', '.join(keys[:3])})"
        for kind, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", misshaped),
        )
        if keys
    ]
