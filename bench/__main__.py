"""``python -m bench``: every benchmark, figures into docs/benchmarks.md (see run_all.py)."""

import sys

from bench.run_all import main

sys.exit(main())
