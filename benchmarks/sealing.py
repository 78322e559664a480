"""Seal and unseal time of a 32-byte value, on CPython and on the MicroPython unix port,
and the MicroPython heap cost of a sealing context.

    python benchmarks/sealing.py [--quick] [--json PATH]

CPython: `cryptography` (the default backend) and sealing/aesccm.py over
cryptography's AES-ECB (what MicroPython runs, for comparison).  MicroPython:
aesccm.py over cryptolib (benchmarks/sealing_mpy.py, run under `micropython`).
Each is measured with a volatile context (crypto and format only) and with state
files (sealing writes the state once per 1024 values; unsealing writes it for every
accepted message, so that a replay stays refused after a restart).  Heap figures:
gc.mem_alloc() after gc.collect(), 64-bit unix port (a board's are smaller).
Prints a table; writes JSON to benchmarks/results/sealing.json (or --json).
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
sys.path.insert(0, SRC)

from arduino_iot_cloud.sealing import SealingContext  # noqa: E402
from arduino_iot_cloud.sealing.backend import PureBackend, default_backend  # noqa: E402

SECRET = bytes(range(32))
VALUE = "x" * 32


def _ecb(key):
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update


def per_call_us(fn, items):
    t0 = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - t0) * 1e6 / len(items)


def cpython(backend, n, state_dir=None):
    def ctx(sender, recipient, name):
        if state_dir is None:
            return SealingContext(SECRET, sender, recipient, volatile=True, backend=backend)
        return SealingContext(SECRET, sender, recipient, state_path=os.path.join(state_dir, name),
                              new_state=True, backend=backend)

    device, owner = ctx(b"dev", b"owner", "dev.json"), ctx(b"owner", b"dev", "owner.json")
    seal = per_call_us(lambda _: device.seal("v", VALUE), range(n))
    texts = [device.seal("v", VALUE) for _ in range(n)]
    unseal = per_call_us(lambda t: owner.unseal("v", t), texts)
    return seal, unseal


def micropython(n):
    exe = shutil.which("micropython")
    if exe is None:
        return None, "micropython is not installed"
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, MICROPYPATH=SRC + ":.frozen")
        r = subprocess.run([exe, os.path.join(ROOT, "benchmarks", "sealing_mpy.py"), str(n), d], env=env,
                           capture_output=True, text=True, timeout=600)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if r.returncode != 0 or not lines:
        return None, (r.stdout + r.stderr)[-500:]
    return json.loads(lines[0][7:]), None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a few iterations, for the test suite")
    ap.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "sealing.json"))
    args = ap.parse_args()
    n_cpython, n_mpy = (50, 20) if args.quick else (5000, 500)

    rows = []
    for label, backend in (("CPython, cryptography", default_backend()), ("CPython, aesccm.py", PureBackend(_ecb))):
        seal, unseal = cpython(backend, n_cpython)
        with tempfile.TemporaryDirectory() as d:
            seal_f, unseal_f = cpython(backend, n_cpython, d)
        rows.append((label, seal, unseal, seal_f, unseal_f))
    mpy, why = micropython(n_mpy)
    if mpy is not None:
        rows.append(("MicroPython unix, aesccm.py + cryptolib", mpy["seal_us"], mpy["unseal_us"],
                     mpy["seal_file_us"], mpy["unseal_file_us"]))

    print("sealing benchmark, %s, %s, Python %s, %d CPUs" % (
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), platform.machine(),
        platform.python_version(), os.cpu_count() or 0))
    print("32-byte str value; us per call (mean of %d on CPython, %d on MicroPython)" % (n_cpython, n_mpy))
    print("| runtime, crypto | seal | unseal | seal, state file | unseal, state file |")
    print("|---|---|---|---|---|")
    for label, *figures in rows:
        print("| %s | %s |" % (label, " | ".join("%.1f" % f for f in figures)))
    if mpy is not None:
        print("MicroPython heap: sealing modules imported %.1f KB, one context %.2f KB; sealed text %d chars"
              % (mpy["import_bytes"] / 1024, mpy["context_bytes"] / 1024, mpy["sealed_len"]))
    else:
        print("MicroPython: unavailable (%s)" % why)

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"rows": [dict(zip(("runtime", "seal_us", "unseal_us", "seal_file_us", "unseal_file_us"), r))
                            for r in rows], "micropython": mpy, "micropython_unavailable": why}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
