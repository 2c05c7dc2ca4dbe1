"""What every benchmark shares: results are markdown on stdout, progress goes to stderr.

``python -m bench`` (run_all.py) copies a benchmark's stdout into docs/benchmarks.md, so
anything that is not a result must not be printed there.
"""

from __future__ import annotations

import sys


def progress(message: str) -> None:
    """A progress line for the person watching; not part of the results."""
    print(message, file=sys.stderr, flush=True)


def results_stream():
    """A text stream onto this process's stdout, with file descriptor 1 itself pointed at
    stderr: C libraries that print there (PyBullet writes ``argv[0]=`` on every connect) then
    land in the progress stream, and only what is written to the returned stream is a result.
    """
    import os

    sys.stdout.flush()
    results = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return results
