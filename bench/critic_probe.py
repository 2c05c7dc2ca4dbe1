"""What a trained SAC critic makes of the action, per dish kind, against the true effect
(issue 21: why demonstrations from pixels left the policy careless).

    python bench/critic_probe.py CKPT [CKPT ...] [--recording DIR]

For each checkpoint of a policy on the synthetic video or state env, on the steps of a
recording (default: 20 shifts of the optimal policy, seed 99, the demonstrations of
``bench/learn.py --task demos``) and on 4 fresh optimal shifts (seed 7):

- the deterministic policy's mean action per kind and the spread of its care (the online
  actor's, which the critics train: not a ``policy_average_decay`` average);
- the critic's min(Q1, Q2) over care at the policy's speed, as Q(care) - Q(1), averaged
  over the kind's clips, against the true difference: the synthetic task's reward of a step
  depends on nothing but the kind and the action (the next kind is drawn afresh), so with
  the multiplier at 0 the true Q(s, a) - Q(s, a') is the expected step reward's difference,
  which the env's own simulator gives here by Monte Carlo;
- the policy's care per quarter of the shift (its progress), which a critic that reads the
  action right would not vary.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import progress, results_stream  # noqa: E402
from v2p.data.clips import load_episodes  # noqa: E402
from v2p.envs import DishwashingParams  # noqa: E402
from v2p.envs.dynamics import ShiftSimulator  # noqa: E402

CARES = np.linspace(0.0, 1.0, 5)
QUARTERS = 4


def expected_step_reward(
    params: DishwashingParams, kind: int, speed: float, cares: np.ndarray, draws: int = 200_000
) -> np.ndarray:
    """The mean step reward (profit rate, $/hr) of racks of ``kind`` at ``(speed, care)`` for
    each care, from ``draws`` steps of the env's own simulator (common random numbers)."""
    out = []
    for care in cares:
        rng = np.random.default_rng(0)
        sim = ShiftSimulator(params, draws)
        sim.reset(rng)
        sim.kind = np.full(draws, kind)
        out.append(sim.step(np.tile([speed, care], (draws, 1)), rng).profit.mean())
    return np.asarray(out)


def observations_of(
    folder: Path, kinds: int, observation_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every step's observation (its clip, or its task state for a state policy), dish kind
    and shift progress in a recording."""
    clips = len(observation_shape) == 4
    obs, kind, progress_ = [], [], []
    for episode in load_episodes([str(folder)], frame_size=observation_shape[-1] if clips else 64):
        for k in range(len(episode.actions)):
            obs.append(episode.frames[k : k + episode.clip_len] if clips else episode.states[k])
            kind.append(int(np.argmax(episode.states[k][:kinds])))
            progress_.append(float(episode.states[k][kinds]))
    return np.stack(obs), np.asarray(kind), np.asarray(progress_)


@torch.no_grad()
def probe(model, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The deterministic actions (N, 2) and min(Q1, Q2) (N, len(CARES)) over care at them."""
    z = torch.cat(
        [model.encoder(torch.as_tensor(obs[i : i + 256])) for i in range(0, len(obs), 256)]
    )
    action = model.actor.deterministic(z)
    q = []
    for care in CARES:
        a = action.clone()
        a[:, 1] = care
        q.append(torch.min(*model.critic(z, a)))
    return action.numpy(), torch.stack(q, 1).numpy()


def report(checkpoint: Path, sets: dict[str, Path], params: DishwashingParams) -> list[str]:
    from v2p.models.sac import SACModule

    model = SACModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    scale = float(model.hparams.reward_scale)
    lines = [f"`{checkpoint}` (lambda {model.constraint.value:.2f})", ""]
    header = " / ".join(f"{c:.2f}" for c in CARES[:-1])
    lines += [
        f"| steps of | kind | steps | policy (speed, care) | care std | critic: Q(care) - Q(1), "
        f"care {header} | true: the step reward's | policy care per quarter of the shift |",
        "|---|---|---:|---|---:|---|---|---|",
    ]
    shape = tuple(model.hparams.observation_shape)
    for name, folder in sets.items():
        obs, kinds, shift_progress = observations_of(folder, len(params.dish_kinds), shape)
        actions, q = probe(model, obs)
        quarter = np.minimum((shift_progress * QUARTERS).astype(int), QUARTERS - 1)
        for k, kind in enumerate(params.dish_kinds):
            mine = kinds == k
            if not mine.any():
                continue
            speed, care = actions[mine].mean(0)
            learnt = (q[mine] - q[mine][:, -1:]).mean(0)[:-1]
            true = scale * expected_step_reward(params, k, float(speed), CARES)
            true = (true - true[-1])[:-1]
            by_quarter = " / ".join(
                f"{actions[mine & (quarter == i), 1].mean():.2f}"
                if (mine & (quarter == i)).any()
                else "-"
                for i in range(QUARTERS)
            )
            lines.append(
                f"| {name} | {kind.name} | {mine.sum()} | ({speed:.3f}, {care:.3f}) | "
                f"{actions[mine, 1].std():.3f} | {' / '.join(f'{v:+.1f}' for v in learnt)} | "
                f"{' / '.join(f'{v:+.1f}' for v in true)} | {by_quarter} |"
            )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--recording", type=Path, default=None, help="default: 20 expert shifts")
    args = parser.parse_args()
    from v2p.record import record

    out = results_stream()
    with tempfile.TemporaryDirectory() as tmp:
        sets = {}
        if args.recording is None:
            args.recording = Path(tmp) / "demonstrations"
            record(str(args.recording), episodes=20, policy="optimal", seed=99, progress=False)
        sets["recording"] = args.recording
        sets["fresh expert"] = Path(tmp) / "fresh"
        record(str(sets["fresh expert"]), episodes=4, policy="optimal", seed=7, progress=False)
        params = DishwashingParams()
        for checkpoint in args.checkpoints:
            progress(f"probing {checkpoint}")
            print("\n".join(report(checkpoint, sets, params)), file=out)


if __name__ == "__main__":
    main()
