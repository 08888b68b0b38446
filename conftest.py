"""Root pytest configuration: pins nbval's sanitize file, and makes every run the same run.

nbval resolves ``--nbval-sanitize-with`` against the working directory, so the path is set
here, relative to this file, and `pytest` works from any directory of the checkout.

Determinism: every worker of ``pytest -n 2`` collects the tests itself, and pytest-xdist
refuses to start when their ids differ, so test ids and inputs must not depend on the clock,
the hash seed or a random source (tests/test_determinism.py checks the ids). Hypothesis is
derandomized (its examples follow from each test alone) and keeps no example database, and
`seeded_urandom` gives the tests that need random bytes (a client's masking keys) a seeded
``os.urandom``.
"""
import os
import random
from pathlib import Path

import pytest

SANITIZE = Path(__file__).resolve().parent / "notebooks" / "nbval_sanitize.cfg"

try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:          # pragma: no cover - hypothesis is in requirements.txt
    pass
else:
    # Loaded before any test module is imported, so every @settings(...) inherits it.
    _hypothesis_settings.register_profile("lowserver", derandomize=True, database=None)
    _hypothesis_settings.load_profile("lowserver")


def pytest_configure(config):
    if getattr(config.option, "nbval_sanitize_with", None) is None:
        config.option.nbval_sanitize_with = str(SANITIZE)
    # `python tools/student.py grade` counts one point per exercise, or what its test says
    config.addinivalue_line("markers", "points(n): the points an exercise's grading test is worth")


@pytest.fixture
def seeded_urandom(monkeypatch):
    """``os.urandom`` drawn from a generator seeded afresh for each test: the bytes a test
    takes from it (FrameWriter(mask=True)'s masking keys, random payloads) are the same on
    every run, while successive calls still differ."""
    monkeypatch.setattr(os, "urandom", random.Random(6455).randbytes)
