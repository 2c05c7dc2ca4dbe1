"""The ``v2p`` command and ``python -m v2p``: ``report``, ``record``, ``label`` or a LightningCLI
subcommand.

``v2p report LOG_DIR ...`` goes to :mod:`v2p.report.cli`, ``v2p record --out DIR ...`` to
:mod:`v2p.record`, ``v2p label --idm CKPT ...`` to :mod:`v2p.label`; any other first argument
(``fit``, ``validate``, ``--help``, ...)
goes to the LightningCLI of :mod:`v2p.cli` unchanged. Each is imported only when chosen, so
``v2p report`` does not load torch or Lightning.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``argv`` (default: the command line); returns the exit status.

    Returns an int rather than the LightningCLI object: a console script passes the return
    value to ``sys.exit``, which would print an object and exit with status 1.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["report"]:
        from v2p.report.cli import main as report_main

        return report_main(args[1:])
    if args[:1] == ["record"]:
        from v2p.record import main as record_main

        return record_main(args[1:])
    if args[:1] == ["label"]:
        from v2p.label import main as label_main

        return label_main(args[1:])
    from v2p.cli import entry

    # None keeps LightningCLI reading sys.argv itself, exactly as the old entry point did.
    return entry(None if argv is None else args)


if __name__ == "__main__":
    sys.exit(main())
