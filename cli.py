"""Entry point: ``python cli.py fit --config configs/dishwashing_state.yaml``."""

from v2p.cli import main

if __name__ == "__main__":
    main()
