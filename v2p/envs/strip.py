"""A PNG strip of the frames a policy sees over one shift.

    python -m v2p.envs.strip --out docs/frames_video.png [--env-id v2p/DishwashingVideo-v0]

The shift is played by the ceiling policy of :func:`v2p.envs.optimal_policy` (best action per
kind), so the picture shows a realistic shift: the rack kind changing step by step, the
progress bar filling, dishes done (green) and broken (red) accumulating.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np

from v2p.envs.optimal import optimal_policy
from v2p.envs.params import KIND_NAMES


def save_frame_strip(
    out: str | Path, env_id: str = "v2p/DishwashingVideo-v0", panels: int = 10, seed: int = 0
) -> Path:
    """Play one shift and save every few steps' newest frame side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env = gym.make(env_id)
    params = env.unwrapped.params
    best = optimal_policy(params)
    actions = {KIND_NAMES.index(name): np.array(a, np.float32) for name, a in best.actions.items()}
    obs, info = env.reset(seed=seed)
    kind = info["kind"]
    shown = set(np.linspace(0, params.steps, panels).round().astype(int))
    pictures = []
    for t in range(params.steps + 1):
        if t in shown:
            pictures.append((t, KIND_NAMES[kind], obs[-1].transpose(1, 2, 0)))
        if t == params.steps:
            break
        obs, _, _, _, info = env.step(actions[kind])
        kind = int(env.unwrapped.sim.kind[0])  # the rack about to be handled
    fig, axes = plt.subplots(1, len(pictures), figsize=(1.6 * len(pictures), 2.0))
    for ax, (t, name, picture) in zip(np.atleast_1d(axes), pictures, strict=True):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(f"step {t}\nnext: {name}", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{env_id}: what the policy sees over one shift (ceiling policy)", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="PNG path to write")
    parser.add_argument("--env-id", default="v2p/DishwashingVideo-v0")
    parser.add_argument("--panels", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import v2p  # noqa: F401  (registers the ids)

    print(save_frame_strip(args.out, args.env_id, args.panels, args.seed))


if __name__ == "__main__":
    main()
