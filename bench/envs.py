"""Env throughput: state env steps/s (single and batched) and video frames/s.

    python bench/envs.py [--seconds 3] [--num-envs 1024] [--video-envs 256]

Targets on one core (issue 2): batched state env >= 2,000,000 env-steps/s at N=1024; batched
video env >= 20,000 frames/s at 64x64.
"""

from __future__ import annotations

import argparse
import os
import time

import gymnasium as gym
import numpy as np

import v2p  # noqa: F401  (registers the ids)


def steps_per_second(env_id: str, num_envs: int | None, seconds: float, **kwargs) -> float:
    """Env-steps per second of random-action rollouts, after one warm-up shift."""
    rng = np.random.default_rng(0)
    if num_envs is None:
        env = gym.make(env_id, **kwargs)
        env.reset(seed=0)
        actions = rng.random((60, 2)).astype(np.float32)
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for action in actions:
                env.step(action)
            env.reset()
            steps += 60
        return steps / (time.perf_counter() - start)
    envs = gym.make_vec(env_id, num_envs=num_envs, **kwargs)
    envs.reset(seed=0)
    actions = rng.random((num_envs, 2)).astype(np.float32)
    for _ in range(60):
        envs.step(actions)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        envs.step(actions)
        steps += num_envs
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--num-envs", type=int, default=1024, help="batched state envs")
    parser.add_argument("--video-envs", type=int, default=256, help="batched video envs")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = [
        (
            "state, single env",
            "env-steps/s",
            None,
            steps_per_second("v2p/Dishwashing-v0", None, args.seconds),
        ),
        (
            f"state, batched N={args.num_envs}",
            "env-steps/s",
            2_000_000,
            steps_per_second("v2p/Dishwashing-v0", args.num_envs, args.seconds),
        ),
        (
            "video 8x3x64x64, single env",
            "frames/s",
            None,
            steps_per_second("v2p/DishwashingVideo-v0", None, args.seconds),
        ),
        (
            f"video 8x3x64x64, batched N={args.video_envs}",
            "frames/s",
            20_000,
            steps_per_second("v2p/DishwashingVideo-v0", args.video_envs, args.seconds),
        ),
    ]
    print("| env | unit | figure | target | met |")
    print("|---|---|---:|---:|---|")
    for name, unit, target, value in rows:
        met = "" if target is None else ("yes" if value >= target else "NO")
        target_text = "" if target is None else f"{target:,}"
        print(f"| {name} | {unit} | {value:,.0f} | {target_text} | {met} |")


if __name__ == "__main__":
    main()
