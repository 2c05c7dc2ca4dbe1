"""v2p.encoders: shapes, input scaling, gradients, errors, R3D18 weights, determinism."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torchvision.models.video import r3d_18

from v2p.encoders import (
    ENCODER_ARCHS,
    MLPEncoder,
    R3D18Encoder,
    Simple2DCNN,
    Simple3DCNN,
    build_encoder,
)

CLIP = (4, 3, 32, 32)  # (T, C, H, W); the simple CNNs need frames of at least 28 and 31 px
OBS_SHAPES: dict[str, tuple[int, ...]] = {
    "mlp": (17,),
    "simple2dcnn": CLIP,
    "simple3dcnn": CLIP,
    "r3d18": CLIP,
}
VIDEO_ARCHS = ("simple2dcnn", "simple3dcnn", "r3d18")
FIRST_WEIGHT = {  # the parameter that input gradients reach last
    "mlp": "net.0.weight",
    "simple2dcnn": "convs.0.weight",
    "simple3dcnn": "convs.0.weight",
    "r3d18": "backbone.stem.0.weight",
}
B = 2


def _float_obs(arch: str, batch: int = B, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (batch, *OBS_SHAPES[arch])
    if arch == "mlp":
        return torch.randn(shape, generator=g)  # (B, obs_dim)
    return torch.rand(shape, generator=g)  # (B, T, C, H, W) in [0, 1]


def _uint8_clip(batch: int = B, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, *CLIP), dtype=torch.uint8, generator=g)


@pytest.fixture(scope="module")
def encoders() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {arch: build_encoder(arch, OBS_SHAPES[arch]) for arch in ENCODER_ARCHS}


# --- shapes, scaling, gradients, temporal order -------------------------------------------------


def test_encoder_archs_lists_every_arch() -> None:
    assert ENCODER_ARCHS == ("mlp", "simple2dcnn", "simple3dcnn", "r3d18")


@pytest.mark.parametrize("arch", ENCODER_ARCHS)
def test_output_shape_and_attributes(encoders: dict[str, nn.Module], arch: str) -> None:
    enc = encoders[arch]
    assert enc.latent_dim == 64
    assert enc.obs_shape == OBS_SHAPES[arch]
    z = enc(_float_obs(arch))
    assert z.shape == (B, 64)
    assert z.dtype == torch.float32
    assert torch.isfinite(z).all()


@pytest.mark.parametrize("arch", ENCODER_ARCHS)
def test_trunk_and_head_split_every_parameter(encoders: dict[str, nn.Module], arch: str) -> None:
    enc = encoders[arch]
    trunk = {id(p) for p in enc.trunk.parameters()}
    head = {id(p) for p in enc.head.parameters()}
    assert trunk and head and not trunk & head
    assert trunk | head == {id(p) for p in enc.parameters()}
    assert isinstance(list(enc.head.children())[-1], nn.LayerNorm)  # the head makes the latent


@pytest.mark.parametrize("arch", ENCODER_ARCHS)
def test_latent_dim_is_configurable(arch: str) -> None:
    if arch == "r3d18":
        enc = R3D18Encoder(CLIP, latent_dim=5)
    else:
        enc = build_encoder(arch, OBS_SHAPES[arch], latent_dim=5, hidden_dim=16, channels=4)
    assert enc.latent_dim == 5
    assert enc(_float_obs(arch)).shape == (B, 5)


def test_build_encoder_passes_hidden_dim_and_channels() -> None:
    assert build_encoder("mlp", (17,), hidden_dim=24).net[0].out_features == 24
    for arch in ("simple2dcnn", "simple3dcnn"):
        assert build_encoder(arch, CLIP, channels=8).convs[0].out_channels == 8


@pytest.mark.parametrize("arch", VIDEO_ARCHS)
def test_uint8_clip_equals_float_clip_over_255(encoders: dict[str, nn.Module], arch: str) -> None:
    enc = encoders[arch].eval()
    clip = _uint8_clip()
    with torch.no_grad():
        z_uint8 = enc(clip)
        z_float = enc(clip.float() / 255.0)
        z_unscaled = enc(clip.float())
    torch.testing.assert_close(z_uint8, z_float)
    assert not torch.allclose(z_uint8, z_unscaled, atol=1e-3)  # the scaling matters


@pytest.mark.parametrize("arch", VIDEO_ARCHS)
def test_uint8_clip_follows_the_weights_dtype(arch: str) -> None:
    clip_shape = (2, 3, 16, 16) if arch == "r3d18" else CLIP  # float64 r3d_18 is slow on CPU
    enc = build_encoder(arch, clip_shape).double().eval()
    with torch.no_grad():
        z = enc(torch.zeros((1, *clip_shape), dtype=torch.uint8))
    assert z.dtype == torch.float64


@pytest.mark.parametrize("arch", ENCODER_ARCHS)
def test_gradients_reach_the_first_layer(encoders: dict[str, nn.Module], arch: str) -> None:
    enc = encoders[arch].train()
    first = dict(enc.named_parameters())[FIRST_WEIGHT[arch]]
    assert first is next(enc.parameters())
    z = enc(_float_obs(arch))  # (B, latent_dim)
    # A random readout: sum(z) alone is constant under LayerNorm and would give zero gradients.
    readout = torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad((z * readout).sum(), first)
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("cls", [Simple2DCNN, Simple3DCNN])
def test_temporal_fusion_is_order_sensitive(cls: type[nn.Module]) -> None:
    torch.manual_seed(0)
    enc = cls(CLIP).eval()
    clip = _float_obs("simple2dcnn")
    still = clip[:, :1].expand(-1, CLIP[0], -1, -1, -1)  # one frame repeated: order is moot
    with torch.no_grad():
        z, z_reversed = enc(clip), enc(clip.flip(1))
        z_still, z_still_reversed = enc(still), enc(still.flip(1))
    assert (z - z_reversed).abs().max() > 1e-3
    torch.testing.assert_close(z_still, z_still_reversed)


@pytest.mark.parametrize(("cls", "smallest"), [(Simple2DCNN, 28), (Simple3DCNN, 31)])
def test_smallest_frames_the_simple_cnns_accept(cls: type[nn.Module], smallest: int) -> None:
    """2D: 4x4/4 stem, 3x3/2, 3x3/1 -> 28; 3D: 3x3/2 three times, 3x3/1 -> 31."""
    n = smallest
    assert cls((2, 3, n, n))(torch.rand(1, 2, 3, n, n)).shape == (1, 64)
    match = rf"at least {n}x{n} pixels.*got clip_shape \(2, 3, {n - 1}, 64\)"
    with pytest.raises(ValueError, match=match):
        cls((2, 3, n - 1, 64))


def test_simple3dcnn_accepts_a_single_frame() -> None:
    assert Simple3DCNN((1, 3, 32, 32))(torch.rand(2, 1, 3, 32, 32)).shape == (2, 64)


@settings(max_examples=25, deadline=None)
@given(
    obs_dim=st.integers(1, 32),
    latent_dim=st.integers(2, 16),
    hidden_dim=st.integers(1, 32),
    num_layers=st.integers(1, 4),
    batch=st.integers(1, 5),
)
@example(obs_dim=7, latent_dim=2, hidden_dim=1, num_layers=1, batch=1)  # failed in float32
def test_mlp_layers_and_layernormed_output(
    obs_dim: int, latent_dim: int, hidden_dim: int, num_layers: int, batch: int
) -> None:
    enc = MLPEncoder(obs_dim, latent_dim=latent_dim, hidden_dim=hidden_dim, num_layers=num_layers)
    linears = [m for m in enc.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == num_layers
    assert isinstance(enc.net[-1], nn.LayerNorm)
    z = enc(torch.randn(batch, obs_dim))
    assert z.shape == (batch, latent_dim)
    # LayerNorm starts with weight 1 and bias 0: every latent has zero mean. Checked in
    # float64: in float32, a latent whose entries nearly agree divides the rounding of their
    # mean by sqrt(eps) and missed 1e-5 (latent_dim 2, hidden_dim 1: 1.6e-5).
    z64 = enc.double()(torch.randn(batch, obs_dim, dtype=torch.float64))
    torch.testing.assert_close(z64.mean(dim=1), torch.zeros_like(z64[:, 0]), atol=1e-9, rtol=0)


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "bad_shape", "expected"),
    [
        ("mlp", (B, 18), "MLPEncoder expects observations of shape (B, 17), got (2, 18)"),
        ("mlp", (17,), "MLPEncoder expects observations of shape (B, 17), got (17,)"),
        (
            "simple2dcnn",
            (4, 3, 32, 32),
            "Simple2DCNN expects observations of shape (B, 4, 3, 32, 32), got (4, 3, 32, 32)",
        ),
        (
            "simple3dcnn",
            (B, 5, 3, 32, 32),
            "Simple3DCNN expects observations of shape (B, 4, 3, 32, 32), got (2, 5, 3, 32, 32)",
        ),
        (
            "r3d18",
            (B, 4, 32, 32, 3),
            "R3D18Encoder expects observations of shape (B, 4, 3, 32, 32), got (2, 4, 32, 32, 3)",
        ),
    ],
)
def test_forward_rejects_wrong_shapes(
    encoders: dict[str, nn.Module], arch: str, bad_shape: tuple[int, ...], expected: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)):
        encoders[arch](torch.zeros(bad_shape))


@pytest.mark.parametrize("arch", ENCODER_ARCHS)
def test_forward_rejects_integer_dtypes_other_than_uint8(
    encoders: dict[str, nn.Module], arch: str
) -> None:
    obs = torch.zeros((B, *OBS_SHAPES[arch]), dtype=torch.int64)
    with pytest.raises(ValueError, match=r"expects .*(floating-point|uint8).*torch\.int64"):
        encoders[arch](obs)


def test_build_encoder_rejects_unknown_arch() -> None:
    with pytest.raises(ValueError, match="unknown encoder arch 'resnet'") as info:
        build_encoder("resnet", CLIP)
    for arch in ENCODER_ARCHS:
        assert arch in str(info.value)


def test_build_encoder_rejects_mlp_on_a_clip() -> None:
    expected = (
        "arch 'mlp' needs a 1-D observation, got shape (8, 3, 64, 64); "
        "use simple2dcnn, simple3dcnn or r3d18 for clips"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        build_encoder("mlp", (8, 3, 64, 64))


@pytest.mark.parametrize("arch", VIDEO_ARCHS)
@pytest.mark.parametrize("obs_shape", [(17,), (3, 64, 64)])
def test_build_encoder_rejects_video_arch_on_non_clip(
    arch: str, obs_shape: tuple[int, ...]
) -> None:
    expected = f"arch '{arch}' needs a 4-D clip observation (T, C, H, W), got shape {obs_shape}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        build_encoder(arch, obs_shape)


@pytest.mark.parametrize("arch", ENCODER_ARCHS)
@pytest.mark.parametrize("latent_dim", [0, -3])
def test_build_encoder_rejects_non_positive_latent_dim(arch: str, latent_dim: int) -> None:
    with pytest.raises(ValueError, match=f"latent_dim must be positive, got {latent_dim}"):
        build_encoder(arch, OBS_SHAPES[arch], latent_dim=latent_dim)


@pytest.mark.parametrize("arch", ["mlp", "simple2dcnn", "simple3dcnn"])
def test_build_encoder_rejects_weights_path_for_other_archs(arch: str) -> None:
    with pytest.raises(ValueError, match=f"only read by arch 'r3d18'.*'w.pt' with arch '{arch}'"):
        build_encoder(arch, OBS_SHAPES[arch], weights_path="w.pt")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: MLPEncoder(0), "MLPEncoder needs a positive obs_dim, got obs_dim=0"),
        (lambda: MLPEncoder(4, num_layers=0), "needs a positive num_layers, got num_layers=0"),
        (lambda: Simple2DCNN(CLIP, channels=0), "Simple2DCNN needs a positive channels"),
        (lambda: Simple3DCNN(CLIP, latent_dim=-1), "Simple3DCNN needs a positive latent_dim"),
        (lambda: Simple2DCNN((3, 32, 32)), "clip_shape (T, C, H, W) of 4 positive sizes"),
        (lambda: R3D18Encoder((4, 1, 32, 32)), "R3D18Encoder needs RGB clips (C = 3"),
    ],
)
def test_constructors_reject_bad_arguments(make: Callable[[], nn.Module], expected: str) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)):
        make()


# --- R3D18 weights ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def r3d_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    return r3d_18(weights=None).state_dict()  # includes fc.*, as torchvision's files do


def test_r3d18_missing_weights_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "r3d_18.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(repr(str(path)))) as info:
        R3D18Encoder(CLIP, weights_path=str(path))
    assert "R3D_18_Weights.KINETICS400_V1" in str(info.value)
    assert "https://download.pytorch.org/models/r3d_18" in str(info.value)


@pytest.mark.parametrize("variant", ["full", "without_fc", "without_batch_counters"])
def test_r3d18_loads_local_weights(
    tmp_path: Path, r3d_state: dict[str, torch.Tensor], variant: str
) -> None:
    state = dict(r3d_state)
    if variant != "full":
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if variant == "without_batch_counters":
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "r3d_18.pth"
    torch.save(state, path)

    torch.manual_seed(0)  # a different init from the saved one, so equality comes from loading
    enc = R3D18Encoder(CLIP, weights_path=str(path))
    backbone = enc.backbone.state_dict()
    saved = {k: v for k, v in r3d_state.items() if not k.startswith("fc.")}
    assert backbone.keys() == saved.keys()
    for key, value in saved.items():
        assert torch.equal(backbone[key], value), key
    assert enc.head[0].weight.shape == (64, 512)  # fc (400 classes) is replaced, not loaded
    assert "mean" not in enc.state_dict()  # normalisation constants are not checkpointed


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", bytes(range(256)) * 4])
def test_r3d18_unreadable_weights_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "corrupt.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(repr(str(path))) + ".*could not be read"):
        R3D18Encoder(CLIP, weights_path=str(path))


def test_r3d18_weights_file_that_is_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match=re.escape(repr(str(path))) + ".*holds a Tensor"):
        R3D18Encoder(CLIP, weights_path=str(path))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("drop", r"1 missing keys \(first: stem\.0\.weight\)"),
        ("extra", r"1 unexpected keys \(first: head\.weight\)"),
        ("reshape", r"1 shape mismatches \(first: layer1\.0\.conv1\.0\.weight \(7,\) != \(64, "),
    ],
)
def test_r3d18_mismatched_weights_file(
    tmp_path: Path, r3d_state: dict[str, torch.Tensor], edit: str, expected: str
) -> None:
    state = dict(r3d_state)
    if edit == "drop":
        del state["stem.0.weight"]
    elif edit == "extra":
        state["head.weight"] = torch.zeros(2)
    else:
        state["layer1.0.conv1.0.weight"] = torch.zeros(7)
    path = tmp_path / "mismatched.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=re.escape(repr(str(path))) + ".*" + expected):
        R3D18Encoder(CLIP, weights_path=str(path))


# --- determinism --------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ENCODER_ARCHS)
def test_same_seed_builds_identical_weights(arch: str) -> None:
    def build(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return build_encoder(arch, OBS_SHAPES[arch]).state_dict()

    first, again, other = build(7), build(7), build(8)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.mark.parametrize("arch", ["simple2dcnn", "simple3dcnn", "r3d18"])
def test_channels_last_gives_the_same_latents(arch):
    shape = (8, 3, 32, 32) if arch != "r3d18" else (4, 3, 16, 16)
    torch.manual_seed(0)
    plain = build_encoder(arch, shape, latent_dim=8)
    fast = build_encoder(arch, shape, latent_dim=8, channels_last=True)
    fast.load_state_dict(plain.state_dict())
    conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Conv3d))
    fmt = torch.channels_last if conv.weight.dim() == 4 else torch.channels_last_3d
    assert conv.weight.is_contiguous(memory_format=fmt)
    clips = torch.randint(0, 256, (2, *shape), dtype=torch.uint8)
    plain.eval(), fast.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(clips), plain(clips), rtol=1e-4, atol=1e-4)
