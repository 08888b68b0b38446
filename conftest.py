"""Root pytest configuration: pins nbval's sanitize file.

nbval resolves ``--nbval-sanitize-with`` against the working directory, so the path is set
here, relative to this file, and `pytest` works from any directory of the checkout.
"""
from pathlib import Path

SANITIZE = Path(__file__).resolve().parent / "notebooks" / "nbval_sanitize.cfg"


def pytest_configure(config):
    if getattr(config.option, "nbval_sanitize_with", None) is None:
        config.option.nbval_sanitize_with = str(SANITIZE)
