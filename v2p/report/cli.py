"""``v2p report LOG_DIR [LOG_DIR ...]``: figures and a one-page summary of runs' ledgers.

Each ``LOG_DIR`` is a run's log directory (its ``economics.csv`` is read) or a ledger file
itself (e.g. a DDP rank's ``economics.rank1.csv``). Options follow ECONOMICS.md section 8.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from v2p.report.cashflow import CashFlowOptions
from v2p.report.summary import write_report

DEFAULT_LEDGER = "economics.csv"


def build_parser() -> argparse.ArgumentParser:
    """The ``v2p report`` argument parser."""
    defaults = CashFlowOptions()
    parser = argparse.ArgumentParser(
        prog="v2p report",
        description=(
            "Read runs' economics ledgers and write PNG figures and a one-page Markdown summary "
            "(economics_report.md): wages and parity, errors and lambda, profit, the spread's "
            "split, customer cost and surplus, the deflation trend, the section-9 guarantees and "
            "the fleet NPV of ECONOMICS.md section 8 with a bootstrap P5-P95 band."
        ),
    )
    parser.add_argument(
        "log_dirs",
        nargs="+",
        metavar="LOG_DIR",
        type=Path,
        help=f"a run's log directory (holding {DEFAULT_LEDGER}) or a ledger CSV file",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the report (default: the log dir; required for several)",
    )
    parser.add_argument("--robots", type=float, default=defaults.robots, help="fleet size")
    parser.add_argument(
        "--hours-per-year",
        type=float,
        default=defaults.hours_per_year,
        help="operating hours per robot per year",
    )
    parser.add_argument(
        "--years", type=int, default=defaults.years, help="years of cash flow in the NPV"
    )
    parser.add_argument(
        "--discount-rate",
        type=float,
        default=defaults.discount_rate,
        help="annual discount rate, in [0, 1]",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=defaults.bootstrap,
        help="bootstrap resamples of the shifts for the NPV band",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the bootstrap")
    return parser


def _ledger_path(arg: Path) -> Path:
    return arg if arg.suffix == ".csv" and not arg.is_dir() else arg / DEFAULT_LEDGER


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``v2p report``; returns the exit status (0 written, 1 a ledger or option problem).

    Usage errors (a missing ``LOG_DIR``, several without ``--out``) exit with status 2 through
    argparse.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.out is None and len(args.log_dirs) > 1:
        parser.error("--out is required when several LOG_DIRs are given")
    ledgers = [_ledger_path(arg) for arg in args.log_dirs]
    out = args.out if args.out is not None else ledgers[0].parent
    try:
        options = CashFlowOptions(
            robots=args.robots,
            hours_per_year=args.hours_per_year,
            years=args.years,
            discount_rate=args.discount_rate,
            bootstrap=args.bootstrap,
            seed=args.seed,
        )
        files = write_report(ledgers, out, options)
    except (ValueError, OSError) as exc:
        print(f"v2p report: error: {exc}", file=sys.stderr)
        return 1
    print(f"v2p report: wrote {files.markdown}")
    for path in files.figures.values():
        print(f"v2p report: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
