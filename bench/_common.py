"""What every benchmark shares: results are markdown on stdout, progress goes to stderr.

``python -m bench`` (run_all.py) copies a benchmark's stdout into docs/benchmarks.md, so
anything that is not a result must not be printed there.
"""

from __future__ import annotations

import sys


def progress(message: str) -> None:
    """A progress line for the person watching; not part of the results."""
    print(message, file=sys.stderr, flush=True)
