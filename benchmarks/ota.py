"""Over-the-air update benchmark: download + verify + install of a 100 KB and a 1 MB
OTA file, on CPython and on the MicroPython unix port.

    python benchmarks/ota.py [--quick] [--json PATH]

Builds OTA files of about 100 KB and 1 MB (an application whose data file is
random bytes; literal-only LZSS, so the file is 1/8 larger than its tar),
serves them over HTTPS on 127.0.0.1 (tests/ota/otatools.py's server, with a
certificate from a local CA made by the local cloud's PKI), and runs
benchmarks/ota_device.py, which drives download.Download into
install.Installer as the OTA object does, on each runtime:

- seconds: wall clock of download + verify + install (best of --runs)
- max step: the longest single step, i.e. the most one update()/loop turn waits
- peak memory, from a separate run (measuring slows it down): CPython,
  tracemalloc's peak during the whole install; MicroPython, the largest live
  heap (gc.collect(); gc.mem_alloc()) between steps, above what was in use
  before the download started
- MicroPython: the smallest -X heapsize (bisection, 2 KB steps) on which each
  install still succeeds, with the library imported (a bound on the
  whole process's heap, not only the download's)

Prints a table and writes JSON (benchmarks/results/ota.json unless --json).
--quick: one run each, 100 KB only, no bisection.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "src")
sys.path.insert(0, SRC)
sys.path.insert(0, os.path.join(ROOT, "tests", "ota"))

from otatools import HttpsFileServer, bundle, example_app  # noqa: E402
from arduino_iot_cloud.localcloud.pki import Pki  # noqa: E402

DEVICE = os.path.join(HERE, "ota_device.py")


def run_device(runtime: str, url: str, cafile: str, trace: bool = False,
               heapsize: Optional[int] = None) -> Tuple[Optional[Dict[str, float]], Optional[str]]:
    root = tempfile.mkdtemp(prefix="ota-bench-root-")
    try:
        if runtime == "micropython":
            cmd = ["micropython"] + (["-X", "heapsize=%d" % heapsize] if heapsize else [])
            env = dict(os.environ, MICROPYPATH=SRC + ":.frozen")
        else:
            cmd = [sys.executable]
            env = dict(os.environ, PYTHONPATH=SRC)
        proc = subprocess.run(cmd + [DEVICE, url, root, cafile] + (["trace"] if trace else []), env=env,
                              capture_output=True, text=True, timeout=600, cwd=ROOT)
        if proc.returncode != 0:
            return None, (proc.stdout + proc.stderr)[-600:]
        figures = {}
        for line in proc.stdout.splitlines():
            key, _, value = line.partition(" ")
            figures[key] = float(value)
        return figures, None
    finally:
        shutil.rmtree(root, ignore_errors=True)


def smallest_heap(url: str, cafile: str, lo: int = 8 * 1024, hi: int = 512 * 1024) -> Optional[int]:
    ok, _ = run_device("micropython", url, cafile, heapsize=hi)
    if ok is None:
        return None
    while hi - lo > 2048:
        mid = (lo + hi) // 2
        res, _ = run_device("micropython", url, cafile, heapsize=mid)
        if res is None:
            lo = mid
        else:
            hi = mid
    return hi


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default=os.path.join(HERE, "results", "ota.json"))
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    sizes = [("100 KB", 100 * 1024)] + ([] if args.quick else [("1 MB", 1024 * 1024)])
    runtimes = ["cpython"] + (["micropython"] if shutil.which("micropython") else [])
    work = tempfile.mkdtemp(prefix="ota-bench-")
    results = {}
    try:
        pki = Pki(os.path.join(work, "pki"))
        pki.ensure()
        served = os.path.join(work, "served")
        os.mkdir(served)
        server = HttpsFileServer(served, str(pki.server_cert), str(pki.server_key))
        try:
            for label, size in sizes:
                padding = int(size / 1.125) - 12000
                data, _ = bundle(example_app(2, padding=padding))
                padding += int((size - len(data)) / 1.125)  # one correction: tar records are 10 KB
                data, _ = bundle(example_app(2, padding=padding))
                name = "app-%d.ota" % size
                with open(os.path.join(served, name), "wb") as f:
                    f.write(data)
                url = server.url(name)
                for runtime in runtimes:
                    key = "%s %s" % (runtime, label)
                    best, error = None, None
                    for _ in range(runs):
                        res, error = run_device(runtime, url, str(pki.ca_file))
                        if res is not None and (best is None or res["seconds"] < best["seconds"]):
                            best = res
                    entry = {"file_bytes": len(data), "error": error if best is None else None}
                    if best is not None:
                        entry.update(best)
                    traced, _ = run_device(runtime, url, str(pki.ca_file), trace=True)
                    if traced:
                        entry["peak_traced"] = traced["peak_traced"]
                    if runtime == "micropython" and not args.quick:
                        entry["smallest_heapsize"] = smallest_heap(url, str(pki.ca_file))
                    results[key] = entry
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%-22s %10s %9s %8s %11s %12s %10s" % ("runtime, file", "bytes", "seconds", "MB/s", "max step ms",
                                                 "peak memory", "min heap"))
    for key, e in results.items():
        if e.get("error"):
            print("%-22s failed: %s" % (key, e["error"]))
            continue
        peak = e.get("peak_traced")
        print("%-22s %10d %9.2f %8.2f %11d %12s %10s" % (
            key, e["file_bytes"], e["seconds"], e["file_bytes"] / e["seconds"] / 1e6, e["max_step_ms"],
            "%d KB" % (peak // 1024) if peak else "-",
            "%d KB" % (e["smallest_heapsize"] // 1024) if e.get("smallest_heapsize") else "-"))
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
