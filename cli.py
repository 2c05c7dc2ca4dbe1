"""Entry point: ``python cli.py fit --config configs/dishwashing_state.yaml``."""

import sys

from v2p.cli import entry

if __name__ == "__main__":
    sys.exit(entry())
