"""Observation encoders: `(B, *obs_shape)` -> `(B, latent_dim)`; plain nn.Modules."""

from v2p.encoders.build import ENCODER_ARCHS, build_encoder, encoder_from_hparams
from v2p.encoders.mlp import MLPEncoder
from v2p.encoders.video import R3D18Encoder, Simple2DCNN, Simple3DCNN

__all__ = [
    "ENCODER_ARCHS",
    "MLPEncoder",
    "R3D18Encoder",
    "Simple2DCNN",
    "Simple3DCNN",
    "build_encoder",
    "encoder_from_hparams",
]
