"""How fast the OTA packer builds a file, and how well LZSS compresses an application.

    python benchmarks/ota_pack.py            # bundles of 100 KB and 1 MB, best of 3
    python benchmarks/ota_pack.py --runs 1
    python benchmarks/ota_pack.py --quick    # 8 and 16 KB bundles, once (so the script cannot rot)

Each bundle is an application directory made of this repository's own Python sources
(copied again under another name when they run out), plus a 1 MB bundle of random
bytes, the incompressible worst case.  For each: the tar size, the OTA file size,
the ratio, and the seconds (and MB/s of tar) of ``app_tar`` + ``lzss_encode`` +
header (``build_ota_file``), and of the cloud's check of the file (``read_ota_file``:
CRC + decode), which ``send_ota`` runs.  CPython only.
"""

import argparse
import os
import platform
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "src"))

from arduino_iot_cloud.ota import pack  # noqa: E402


def sources():
    """This repository's .py files, sorted."""
    found = []
    for top in ("src", "tests", "benchmarks", "examples"):
        for root, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            found.extend(os.path.join(root, f) for f in sorted(files) if f.endswith(".py"))
    return found


def make_sources_app(directory, size):
    """An app dir of about ``size`` bytes of Python sources."""
    total, copy = 0, 0
    files = sources()
    while total < size:
        for path in files:
            with open(path, "rb") as f:
                data = f.read()[: size - total]
            rel = os.path.relpath(path, ROOT)
            dest = os.path.join(directory, "copy%d" % copy, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(data)
            total += len(data)
            if total >= size:
                break
        copy += 1


def make_random_app(directory, size):
    with open(os.path.join(directory, "blob.bin"), "wb") as f:
        f.write(os.urandom(size))


def best(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="8 and 16 KB bundles, one run")
    args = ap.parse_args()
    small, big = (8 * 1024, 16 * 1024) if args.quick else (100 * 1024, 1024 * 1024)
    runs = 1 if args.quick else args.runs
    print("CPython %s on %s, load average %s" % (platform.python_version(), platform.machine(),
                                                 " ".join("%.2f" % x for x in os.getloadavg())))
    print("%-18s %10s %10s %7s %10s %9s %10s" % ("bundle", "tar B", "ota B", "ratio", "pack s", "MB/s", "check s"))
    for label, maker, size in (("sources %d KB" % (small // 1024), make_sources_app, small),
                               ("sources %d KB" % (big // 1024), make_sources_app, big),
                               ("random %d KB" % (big // 1024), make_random_app, big)):
        with tempfile.TemporaryDirectory() as d:
            maker(d, size)
            seconds, blob = best(lambda: pack.build_ota_file(pack.app_tar(d)), runs)
            tar_size = len(pack.app_tar(d))
            check, payload = best(lambda: pack.read_ota_file(blob), runs)
            assert len(payload) == tar_size
            print("%-18s %10d %10d %7.3f %10.2f %9.2f %10.2f" % (
                label, tar_size, len(blob), len(blob) / tar_size, seconds, tar_size / seconds / 1e6, check))


if __name__ == "__main__":
    main()
