"""benchmarks/mpy_memory.py must not rot: --quick runs every measurement once, small, and
prints the table and writes the JSON.  Never asserts on a memory or speed figure, only
that each one was measured (and that the churn loop moved the messages it says)."""

import json
import os
import subprocess
import sys

import pytest

from mpy_helpers import ROOT

BENCH = os.path.join(ROOT, "benchmarks", "mpy_memory.py")


@pytest.mark.e2e
def test_quick_memory_benchmark_prints_figures(mpy, local_cloud, tmp_path):
    # (local_cloud: skips the test where mosquitto or paho is missing; the benchmark
    # starts a cloud of its own.)
    out_json = tmp_path / "mpy_memory.json"
    proc = subprocess.run([sys.executable, BENCH, "--quick", "--json", str(out_json)], cwd=ROOT,
                          capture_output=True, text=True, timeout=80)
    report = "stdout:\n%s\nstderr (tail):\n%s" % (proc.stdout, proc.stderr[-3000:])
    assert proc.returncode == 0, report
    out = proc.stdout
    for text in ("| Import cost", "what every device loads", "peak during attach", "peak in steady state",
                 "Churn: 1000 writes in, 1000 values out", "Smallest -X heapsize", "Target: the client's own"):
        assert text in out, report
    line = [ln for ln in out.splitlines() if ln.startswith("1.4.1: ")]
    assert line and (line[0].startswith("1.4.1: available") or line[0].startswith("1.4.1: unavailable (")), report

    data = json.loads(out_json.read_text())
    assert data["imports_py"]["library_total"] > 0
    assert len(data["imports_py"]["modules"]) >= 15
    assert all(isinstance(v, int) for v in data["imports_py"]["modules"].values())
    for mode in ("sync", "async"):
        r = data[mode]
        for key in ("after_import", "attach_peak", "steady_peak", "steady_last"):
            assert r[key] > 0, (mode, key, r)
        assert r["attach_peak"] >= r["after_import"]
    s = data["sync"]
    assert s["churn_rx"] == 1000 and s["churn_tx"] == 1000, s
    assert s["churn_start"] > 0 and s["churn_end"] > 0
    assert data["min_heap_py"]["bytes"], data["min_heap_py"]


@pytest.mark.e2e
def test_memory_budget_and_no_growth_over_messages(mpy, local_cloud, device_factory):
    # The budget, as a test (memory, not speed): on the unix port the client's own heap
    # (beyond its imports) stays under 30 KB through attach and steady state, and 2,000
    # dashboard writes in plus 2,000 published values out leave the heap where it was,
    # give or take the in-flight table reaching its bound (a leak of one 32-byte block
    # per message would show as 128 KB).
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import mpy_memory

    dev = device_factory(auth="password")
    r = mpy_memory.run_device(local_cloud, dev, mpy_memory.SRC, True, 0.5, 2000)
    assert r["churn_rx"] == 2000 and r["churn_tx"] == 2000, r
    own = max(r["attach_peak"], r["steady_peak"]) - r["after_import"]
    assert 0 < own < mpy_memory.TARGET_STEADY, r
    assert r["churn_end"] - r["churn_start"] < 2048, r
