"""The metrics of a batch of deterministic evaluation episodes (``val/*`` and ``test/*``)."""

from __future__ import annotations

import math

import numpy as np

from v2p.contracts import EvalBatch
from v2p.economics import error_rate, mpl
from v2p.economics.ledger import shift_labor


def evaluation_metrics(batch: EvalBatch) -> dict[str, float]:
    """Means over the episodes: return, reward per step, profit and, where the env reports
    economics, MPL (per site too, e.g. ``mpl/customer_a``, when there are several sources),
    error rate and the task model's expected profit and error rate of the actions taken.

    ``profit`` is the section-1 profit rate of each shift from its totals, as the ledger
    records it, so it estimates the same quantity as ``expected_profit``. The mean reward per
    step (``reward_per_step``) does not: a step's damage term ``err_step * MP_step`` is 0
    whenever the step has one attempt or all its attempts fail, so with one or two dishes a
    step it undercharges damage by about ``c_a * p_err * (1 - p_err) / H_step`` (3.4 $/hr at
    ``p_err`` 0.06 on the default task). Envs without economics report their mean reward per
    step as ``profit``.
    """
    episodes = batch.episodes
    reward_per_step = np.mean([e.episode_return / e.length for e in episodes])
    metrics = {
        "env_steps": batch.env_steps,
        "episode_return": np.mean([e.episode_return for e in episodes]),
        "reward_per_step": reward_per_step,
        "profit": reward_per_step,
    }
    shifts = [e.shift for e in episodes if e.shift is not None]
    if shifts:
        metrics["profit"] = np.mean([shift_labor(s).profit for s in shifts])
        metrics["mpl"] = np.mean([mpl(s.completed, s.hours) for s in shifts])
        if len(batch.source_names) > 1:
            for source, name in enumerate(batch.source_names):
                own = [e.shift for e in episodes if e.source == source and e.shift]
                if own:
                    metrics[f"mpl/{name}"] = np.mean([mpl(s.completed, s.hours) for s in own])
        metrics["err_rate"] = np.mean([error_rate(s.errors, s.attempts) for s in shifts])
        metrics["expected_profit"] = np.mean([s.expected_profit for s in shifts])
        metrics["expected_err_rate"] = np.mean(
            [s.expected_errors / max(s.expected_attempts, 1e-12) for s in shifts]
        )
    return {k: float(v) for k, v in metrics.items()}


def expected_site_mpl(batch: EvalBatch, num_sources: int) -> list[float]:
    """Mean expected MPL (expected completions per hour of the actions taken) of each source's
    evaluation shifts in ``batch``, at the sites that measure it (``batch.source_sites``: a
    demonstration dataset's owner's); NaN for a source without shifts there."""
    per_site: list[list[float]] = [[] for _ in range(num_sources)]
    for episode in batch.episodes:
        shift = episode.shift
        if shift is None:
            raise ValueError(
                "attribution measures MPL at each site: the env must report "
                "economics (EpisodeRecord.shift), but an evaluation episode has none"
            )
        completed = shift.expected_attempts - shift.expected_errors
        per_site[episode.source].append(completed / shift.hours)
    sites = batch.source_sites or tuple(range(num_sources))
    return [float(np.mean(per_site[j])) if per_site[j] else math.nan for j in sites]
