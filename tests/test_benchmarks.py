"""The benchmarks must not rot: `python benchmarks/run.py --quick` runs every
benchmark once in a tiny size and prints a table with figures for our client.

Never asserts on speed: only that each figure was measured.  The 1.4.1 side is
either measured or reported as "1.4.1: unavailable (<reason>)" (no network to
create its virtualenv, for instance) -- except in CI (CI=1), which provides it.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "benchmarks", "run.py")

# Rows of the table that must carry a figure for our client.
OURS_ROWS = (
    "attach_async", "attach_sync", "write_latency_async_p50", "write_latency_async_p99",
    "write_latency_sync_p50", "idle_update", "inbound_async", "inbound_sync", "outbound_async",
    "outbound_sync", "dispatch_ratio", "encode_us", "decode_us", "fleet",
)


@pytest.mark.e2e
def test_quick_benchmarks_print_a_table_with_our_figures(tmp_path):
    in_ci = bool(os.environ.get("CI"))
    if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
        if in_ci:
            pytest.fail("CI must provide mosquitto")
        pytest.skip("mosquitto is not installed")
    if not in_ci:
        pytest.importorskip("paho.mqtt")
    out_json = tmp_path / "quick.json"
    proc = subprocess.run([sys.executable, RUNNER, "--quick", "--json", str(out_json)], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=400)
    report = "stdout:\n%s\nstderr (tail):\n%s" % (proc.stdout, proc.stderr[-3000:])
    assert proc.returncode == 0, report
    out = proc.stdout
    assert "| Figure" in out and "ours/1.4.1" in out, report
    assert "CPUs" in out and "Python" in out, report
    # 1.4.1 either ran or says why not.
    line = [ln for ln in out.splitlines() if ln.startswith("1.4.1: ")]
    assert line and (line[0].startswith("1.4.1: available") or line[0].startswith("1.4.1: unavailable (")), report
    if in_ci:  # .ci/setup creates the 1.4.1 venv (benchmarks/setup_141.sh)
        assert line[0].startswith("1.4.1: available"), report

    data = json.loads(out_json.read_text())
    rows = {row["key"]: row for row in data["table"]}
    missing = [k for k in OURS_ROWS if k not in rows or rows[k]["ours_value"] is None]
    assert not missing, "no figure for ours in %s\n%s" % (missing, report)
    for key in OURS_ROWS:  # and the printed table shows it
        assert rows[key]["figure"] in out, report
    if line[0].startswith("1.4.1: available"):
        measured = [k for k in OURS_ROWS if k != "fleet" and rows[k]["141_value"] is not None]
        assert measured, "1.4.1 was available but no figure was measured for it\n" + report
