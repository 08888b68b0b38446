"""Every collection of the tests yields the same ids.

``pytest -n 2`` has each worker collect the tests on its own, and pytest-xdist refuses to run
anything when the two lists differ ("Different tests were collected between gw0 and gw1"). An
id that holds the clock (``gzip.compress()`` writes the time into its header), a random value,
an ``id()`` or the iteration order of a set (which follows the hash seed, different in each
process) breaks the whole command before a single test has run. So: collect twice, in two
processes with different hash seeds, whole seconds apart, and compare. The notebooks (their
ids are cell numbers) and this file (it would recurse) are left out.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def collected_ids(hash_seed: str) -> list[str]:
    done = subprocess.run(
        # --assert=plain: rewriting the asserts changes no id and would double the time.
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "--assert=plain", f"--ignore={Path(__file__).relative_to(ROOT)}", "tests"],
        cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_two_collections_a_few_seconds_apart_give_the_same_ids():
    first = collected_ids("1")
    # The clock is read in whole seconds (gzip's header): start the second run in a later one.
    time.sleep(math.ceil(time.time()) - time.time() + 0.05)
    second = collected_ids("2")
    assert len(first) > 100, first[-20:]
    assert not any("test_determinism" in name for name in first)
    assert first == second, "\n".join(
        [f"- {name}" for name in first if name not in set(second)]
        + [f"+ {name}" for name in second if name not in set(first)]) or "same ids, other order"
