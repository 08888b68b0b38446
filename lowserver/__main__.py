"""``python -m lowserver [MODULE:NAME] [options]``: the command line of `lowserver.cli`.

Hand-written (not generated), and only an entry point: the command line is exported from
notebook 08 (`lowserver/cli.py`). Without MODULE:NAME it serves the demo,
`lowserver.demo.handler` (notebook 07); ``python -m lowserver --help`` says the rest. The
console script ``lowserver`` (pyproject.toml) calls `main` here.
"""
from __future__ import annotations

import sys

from lowserver.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
