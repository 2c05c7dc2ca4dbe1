"""The novelty bound of bench/novelty_outcomes.py: its oracle's statistics are standard normal
on the default task and move on the shifts of the counts they test."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.novelty_outcomes import oracle_statistics  # noqa: E402


def test_the_oracles_statistics_are_standard_normal_on_the_default_task():
    z = oracle_statistics({}, 4000, seed=0)  # (shifts, [attempts, errors, looks])
    assert z.shape == (4000, 3)
    # 4,000 shifts: the mean within 0.07 and the spread within 0.05 of a standard normal's
    # (about 4 standard errors each); a wrong expectation or variance is off by far more.
    assert z.mean(0).abs().max() < 0.07
    assert (z.std(0) - 1).abs().max() < 0.05


def test_a_faster_line_moves_the_attempts_and_fragile_dishes_move_the_errors():
    faster = oracle_statistics({"base_rate": 2.4}, 2000, seed=1).mean(0)
    fragile = oracle_statistics({"k_err": 0.6}, 2000, seed=2).mean(0)
    assert faster[0] > 1.2 and abs(faster[1]) < 0.2  # about 1.7 Poisson sds more attempts
    assert fragile[1] > 2.0 and abs(fragile[0]) < 0.5
    # Lighting is the camera's: the oracle counts the same task.
    lighting = oracle_statistics({"lighting": (0.7, 0.7, 0.7)}, 2000, seed=3).mean(0)
    assert lighting.abs().max() < 0.1


def test_a_trained_robots_actions_show_more_of_the_line_and_less_of_the_dishes():
    # At full speed a shift makes more attempts, so a faster line shows more; careful actions
    # break few dishes, so fragile ones show less.
    def mean_z(task, actions, seed):
        return oracle_statistics(task, 2000, seed, actions).mean(0)

    assert mean_z({"base_rate": 2.4}, "optimal", 4)[0] > mean_z({"base_rate": 2.4}, "random", 5)[0]
    assert mean_z({"k_err": 0.6}, "optimal", 6)[1] < mean_z({"k_err": 0.6}, "random", 7)[1]
    null = oracle_statistics({}, 4000, 8, "optimal")
    assert null[:, :2].mean(0).abs().max() < 0.07 and (null[:, :2].std(0) - 1).abs().max() < 0.05
