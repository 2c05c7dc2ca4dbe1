"""Image augmentation of clips, shared by encoder pretraining and SAC's updates (DrQ)."""

from __future__ import annotations

import torch

__all__ = ["random_shift"]


def random_shift(clips: torch.Tensor, pad: int) -> torch.Tensor:
    """DrQ random shift of clips (B, T, C, H, W), one shift per clip, dtype kept.

    Equal to replicate-padding by ``pad`` and cropping back at a random offset (Kostrikov et
    al. 2020, DrQ), done as two integer gathers so uint8 stays exact on any device. All frames of
    a clip move together, so the motion inside the clip is untouched.
    """
    if pad == 0:
        return clips
    b, t, c, h, w = clips.shape
    # Offsets in [-pad, pad], drawn from torch's global RNG (seeded by seed_everything).
    offsets = torch.randint(-pad, pad + 1, (b, 2), device=clips.device)
    rows = (torch.arange(h, device=clips.device) + offsets[:, :1]).clamp_(0, h - 1)  # (B, H)
    cols = (torch.arange(w, device=clips.device) + offsets[:, 1:]).clamp_(0, w - 1)  # (B, W)
    clips = clips.gather(3, rows.view(b, 1, 1, h, 1).expand(b, t, c, h, w))
    return clips.gather(4, cols.view(b, 1, 1, 1, w).expand(b, t, c, h, w))
