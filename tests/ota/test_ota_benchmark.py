"""benchmarks/ota.py must not rot: its --quick run measures a 100 KB update on each
runtime there is and prints a figure for each.  Never asserts on speed."""

import json
import os
import shutil
import subprocess
import sys

from otatools import ROOT_DIR


def test_quick_ota_benchmark_prints_its_figures(tmp_path):
    out_json = tmp_path / "ota.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT_DIR, "benchmarks", "ota.py"), "--quick", "--json",
                           str(out_json)], cwd=ROOT_DIR, capture_output=True, text=True, timeout=300)
    report = "stdout:\n%s\nstderr:\n%s" % (proc.stdout, proc.stderr[-3000:])
    assert proc.returncode == 0, report
    data = json.loads(out_json.read_text())
    runtimes = ["cpython"] + (["micropython"] if shutil.which("micropython") else [])
    for runtime in runtimes:
        entry = data["%s 100 KB" % runtime]
        assert entry["error"] is None, report
        assert entry["seconds"] > 0 and entry["max_step_ms"] >= 0 and entry["peak_traced"] > 0, entry
        assert entry["file_bytes"] > 90000, entry
        assert ("%s 100 KB" % runtime) in proc.stdout, report
