"""Synthetic camera frames of the dishwashing task, rendered for N sites at once.

A frame is what a camera over the sink would summarise: the rack about to be handled (each
kind a distinct shape and colour), and three bars at the bottom for the shift's progress,
the dishes done and the dishes broken. Everything the policy needs (the kind, time, counts) is
recoverable from one frame; the clip adds the recent history.
"""

from __future__ import annotations

import numpy as np

from v2p.envs.params import KIND_NAMES

BACKGROUND = (40, 52, 70)  # the sink, a dark blue-grey
BAR_TRACK = (70, 70, 70)
KIND_COLOURS = {
    "plate": (235, 230, 205),  # a cream disc
    "glass": (110, 200, 245),  # a pale blue tall tumbler
    "pot": (160, 85, 30),  # a brown wide pot with a handle
}
BAR_COLOURS = ((240, 200, 40), (60, 200, 80), (225, 50, 50))  # progress, completed, broken
DEFAULT_LIGHTING = (1.0, 1.0, 1.0)  # RGB gains of the whole palette; these leave it unchanged


def check_lighting(lighting: tuple[float, float, float]) -> tuple[float, float, float]:
    """Validate an RGB gain (3 finite numbers >= 0) and return it as a tuple of floats."""
    gains = tuple(float(g) for g in np.asarray(lighting, dtype=float).ravel())
    if len(gains) != 3 or not all(np.isfinite(g) and g >= 0 for g in gains):
        raise ValueError(f"lighting must be 3 finite RGB gains >= 0, got {lighting!r}")
    red, green, blue = gains
    return red, green, blue


def lit(colour: tuple[int, int, int], lighting: tuple[float, float, float]) -> np.ndarray:
    """``colour`` under ``lighting``: each channel scaled by its gain, saturating at 255. (3,)"""
    return np.clip(np.rint(np.multiply(colour, lighting)), 0, 255).astype(np.uint8)


def _kind_sprites(
    height: int, width: int, lighting: tuple[float, float, float] = DEFAULT_LIGHTING
) -> np.ndarray:
    """One full frame per kind, (K, 3, H, W) uint8, drawn in the top 5/8 of the frame."""
    rows = np.arange(height)[:, None] / height
    cols = np.arange(width)[None, :] / width
    cy, cx = 0.31, 0.5  # centre of the rack area
    shapes = {
        "plate": (rows - cy) ** 2 + (cols - cx) ** 2 <= 0.22**2,
        "glass": (np.abs(cols - cx) <= 0.1) & (np.abs(rows - cy) <= 0.25),
        "pot": ((np.abs(cols - cx) <= 0.25) & (np.abs(rows - cy - 0.04) <= 0.15))
        | ((np.abs(cols - cx - 0.3) <= 0.06) & (np.abs(rows - cy) <= 0.03)),
    }
    background = lit(BACKGROUND, lighting)
    sprites = np.empty((len(KIND_NAMES), 3, height, width), dtype=np.uint8)
    for k, name in enumerate(KIND_NAMES):
        colour = lit(KIND_COLOURS[name], lighting)
        for c in range(3):
            sprites[k, c] = np.where(shapes[name], colour[c], background[c])
    return sprites


class FrameRenderer:
    """Renders (N, 3, H, W) uint8 frames from the simulator's state, vectorised over N.

    Bar lengths: progress is t/steps of the full width; completed counts at
    ``completed_per_pixel`` dishes a pixel and broken dishes at ``errors_per_pixel``, so counts
    stay readable for a typical shift (about 100 dishes, a few broken).

    ``lighting`` scales every colour of the palette per RGB channel (saturating at 255): a
    dimmer, brighter or tinted scene with the same content, for distribution-shift tests of
    the encoder and the novelty model. The default leaves every frame unchanged.
    """

    def __init__(
        self,
        height: int = 64,
        width: int = 64,
        completed_per_pixel: float = 2.5,
        errors_per_pixel: float = 0.5,
        lighting: tuple[float, float, float] = DEFAULT_LIGHTING,
    ) -> None:
        if height < 16 or width < 16:
            raise ValueError(f"frames must be at least 16x16, got height={height}, width={width}")
        self.height, self.width = height, width
        self.lighting = check_lighting(lighting)
        self.completed_per_pixel = completed_per_pixel
        self.errors_per_pixel = errors_per_pixel
        self._sprites = _kind_sprites(height, width, self.lighting)
        bar_h = max(2, height // 16)
        gap = max(1, bar_h // 2)
        top = height - 3 * bar_h - 3 * gap
        self._bar_rows = [
            slice(top + i * (bar_h + gap), top + i * (bar_h + gap) + bar_h) for i in range(3)
        ]
        self._cols = np.arange(width)
        bar_colours = np.stack([lit(colour, self.lighting) for colour in BAR_COLOURS])
        self._bar_colours = bar_colours[:, :, None, None]  # (3, 3, 1, 1)
        for rows in self._bar_rows:
            self._sprites[:, :, rows, :] = lit(BAR_TRACK, self.lighting)[:, None, None]

    def render(
        self,
        kind: np.ndarray,
        progress: np.ndarray,
        completed: np.ndarray,
        errors: np.ndarray,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Frames for N sites; writes into ``out`` (N, 3, H, W) when given."""
        frames = np.take(self._sprites, kind, axis=0, out=out)  # (N, 3, H, W)
        lengths = (
            progress * self.width,
            completed / self.completed_per_pixel,
            errors / self.errors_per_pixel,
        )
        for rows, colour, length in zip(self._bar_rows, self._bar_colours, lengths, strict=True):
            filled = self._cols[None, :] < np.ceil(length)[:, None]  # (N, W)
            band = frames[:, :, rows, :]  # view (N, 3, bar_h, W)
            np.copyto(band, colour[None], where=filled[:, None, None, :])
        return frames


class FrameHistory:
    """The last T frames of N sites, as clips (N, T, 3, H, W).

    Frames live in a ring of 2T slots written twice (at ``i`` and ``i + T``), so the newest T
    frames are always one contiguous slice and reading a clip is one copy, not a shift of
    the whole history every step.
    """

    def __init__(self, num_envs: int, frames: int, height: int, width: int) -> None:
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames!r}")
        self.frames = frames
        self._ring = np.zeros((num_envs, 2 * frames, 3, height, width), dtype=np.uint8)
        self._pos = 0  # slot of the newest frame (in [0, T))

    def fill(self, frame: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Start new clips: every slot of the masked sites holds ``frame`` (M, 3, H, W)."""
        idx = slice(None) if mask is None else np.flatnonzero(mask)
        self._ring[idx] = frame[:, None]

    def push(self, frame: np.ndarray) -> None:
        """Append the newest frame of every site, (N, 3, H, W)."""
        self._pos = (self._pos + 1) % self.frames
        self._ring[:, self._pos] = frame
        self._ring[:, self._pos + self.frames] = frame

    def clips(self) -> np.ndarray:
        """A copy of the newest T frames in time order, oldest first. (N, T, 3, H, W)"""
        start = self._pos + 1
        return self._ring[:, start : start + self.frames].copy()

    def state_dict(self) -> dict[str, np.ndarray | int]:
        return {"ring": self._ring.copy(), "pos": self._pos}

    def load_state_dict(self, state: dict[str, np.ndarray | int]) -> None:
        ring = np.asarray(state["ring"])
        if ring.shape != self._ring.shape:
            raise ValueError(f"frame history has shape {ring.shape}, expected {self._ring.shape}")
        self._ring[...] = ring
        self._pos = int(state["pos"])
