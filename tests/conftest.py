"""Fixtures for tests/ (the root conftest.py pins nbval and determinism; this one is tests' own).

`mask_path`: the WebSocket masking path, "pure" (`python_apply_mask`) or "accelerated"
(websockets' C `apply_mask`, what `pip install lowserver[speedups]` loads). It is parametrized,
so a module that says ``pytestmark = pytest.mark.usefixtures("mask_path")`` runs every test
once on each path, with ids ending in ``[pure]`` and ``[accelerated]`` (the stage 05 modules,
but for the exercise grader, which grades the pure function alone). "accelerated" is skipped
when the C function is not loaded (websockets missing, or LOWSERVER_NO_SPEEDUPS set).

The path is put in force as the module would choose it at import: `apply_mask` in every
lowserver module and test module that took it (the parser, the writer, tests/loopback.py),
the parser's `_INLINE_MASK_BELOW`, `MASK_IMPLEMENTATION`, and LOWSERVER_NO_SPEEDUPS for any interpreter a test starts.
Module scope: pytest runs a module's tests on one path, then the other (two set-ups per
module, not two per test), and hypothesis allows no function-scoped fixture around @given.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

import lowserver.websocket_frames as frames

TESTS = Path(__file__).resolve().parent
MASK_PATHS = ("pure", "accelerated")


def _holders_of_apply_mask() -> list:
    """The loaded lowserver and test modules whose `apply_mask` is one of the two paths."""
    paths = {frames.python_apply_mask, frames.speedups_apply_mask} - {None}
    holders = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if not (name == "lowserver" or name.startswith("lowserver.")
                or Path(file).resolve().parent == TESTS):
            continue
        if module.__dict__.get("apply_mask") in paths:
            holders.append(module)
    return holders


@pytest.fixture(scope="module", params=MASK_PATHS)
def mask_path(request):
    """Run the module's tests on one masking path; yields "pure" or "accelerated"."""
    if request.param == "pure":
        function, inline_below = frames.python_apply_mask, frames._TRANSLATE_FROM
    elif frames.speedups_apply_mask is None:
        pytest.skip(f"the C accelerator is not loaded (MASK_IMPLEMENTATION is "
                    f"{frames.MASK_IMPLEMENTATION!r}): pip install lowserver[speedups]")
    else:
        function, inline_below = frames.speedups_apply_mask, 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(frames, "MASK_IMPLEMENTATION", "python" if request.param == "pure"
                      else "websockets.speedups")
        for module in _holders_of_apply_mask():
            patch.setattr(module, "apply_mask", function)
            if "_INLINE_MASK_BELOW" in module.__dict__:
                patch.setattr(module, "_INLINE_MASK_BELOW", inline_below)
        if request.param == "pure":
            patch.setenv("LOWSERVER_NO_SPEEDUPS", "1")
        else:
            patch.delenv("LOWSERVER_NO_SPEEDUPS", raising=False)
        yield request.param
