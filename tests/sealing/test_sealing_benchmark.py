"""benchmarks/sealing.py must not rot: --quick prints every figure (never asserts on speed)."""

import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_quick_sealing_benchmark_prints_its_figures(tmp_path):
    out = tmp_path / "sealing.json"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "sealing.py"), "--quick", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(out.read_text())
    runtimes = [row["runtime"] for row in data["rows"]]
    assert runtimes[:2] == ["CPython, cryptography", "CPython, aesccm.py"], r.stdout
    for row in data["rows"]:
        assert all(row[k] > 0 for k in ("seal_us", "unseal_us", "seal_file_us", "unseal_file_us")), row
        assert row["runtime"] in r.stdout
    if shutil.which("micropython") or os.environ.get("CI"):
        assert data["micropython"] is not None, r.stdout + r.stderr
        assert data["micropython"]["context_bytes"] > 0 and "one context" in r.stdout
