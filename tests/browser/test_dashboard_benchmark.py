"""benchmarks/dashboard_latency.py must not rot: run it once, tiny, and check that it printed
its figures (never how fast they are)."""

import os
import re
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def test_the_latency_benchmark_prints_its_figures(browser_parts):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "dashboard_latency.py"), "--count", "3",
                           "--gap", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=80)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert re.search(r"device -> page, 3 values, .* p50 [\d.]+ ms, p90 [\d.]+ ms, p99 [\d.]+ ms", proc.stdout), \
        proc.stdout[-3000:]
