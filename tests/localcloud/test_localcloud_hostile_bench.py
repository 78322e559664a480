"""benchmarks/localcloud_hostile.py must not rot: its smoke run prints a figure for every attack.

Never asserts on the figures themselves (the limits are tested in test_localcloud_limits.py).
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "benchmarks", "localcloud_hostile.py")

pytestmark = pytest.mark.e2e


@pytest.fixture
def time_limit():
    return 120


def test_quick_run_prints_a_row_per_attack():
    proc = subprocess.run([sys.executable, BENCH, "--quick"], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=110)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ") and not ln.startswith("| attack")]
    assert len(rows) == 6, proc.stdout
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 8 and all(cells[:7]), row
