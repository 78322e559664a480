# The device side of benchmarks/ota.py, run by CPython or by the MicroPython
# unix port:  ota_device.py URL ROOT CAFILE [trace]
# Downloads the OTA file at URL over HTTPS (Range requests), verifies it and
# installs it under ROOT exactly as the OTA object does (download.Download
# feeding install.Installer, stepped like update() would), and prints one
# line per figure: "key value".
#   seconds      download + verify + install, wall clock
#   max_step_ms  the longest single step (what a step can block update()/the loop)
#   peak_traced  with "trace": CPython, tracemalloc's peak (bytes); MicroPython,
#                the largest live heap between steps (gc.collect(); gc.mem_alloc()),
#                above what was in use before the download
# ("trace" slows both down: take the time from a run without it.)
import sys
import time

from arduino_iot_cloud.compat import now_ms
from arduino_iot_cloud.ota.download import Download
from arduino_iot_cloud.ota.install import Installer
from arduino_iot_cloud.tls import TLSConfig

url, root, cafile = sys.argv[1], sys.argv[2], sys.argv[3]
trace = len(sys.argv) > 4 and sys.argv[4] == "trace"
try:
    import gc
except ImportError:
    gc = None
mem_alloc = getattr(gc, "mem_alloc", None)
if trace and mem_alloc is None:
    import tracemalloc

    # ssl and getaddrinfo import the idna codec on first use: a one-time cost
    # of the process (~130 KB), not of the download.
    "localhost".encode("idna")
    tracemalloc.start()
if gc is not None:
    gc.collect()
base = mem_alloc() if mem_alloc else 0
peak = 0
chunk = 65536 if mem_alloc is None else 16384
t0 = time.time()
installer = Installer(root)
download = Download(url, TLSConfig({"cafile": cafile}), installer, now_ms(), chunk_size=chunk)
max_step = 0
while True:
    s = now_ms()
    done = download.step(s)
    took = now_ms() - s
    if took > max_step:
        max_step = took
    if trace and mem_alloc is not None:
        gc.collect()
        used = mem_alloc() - base
        if used > peak:
            peak = used
    if done:
        break
    if took == 0:
        time.sleep(0.001)
installer.activate(installer.verify())
seconds = time.time() - t0
print("seconds %.3f" % seconds)
print("max_step_ms %d" % max_step)
print("requests %d" % download.requests)
if trace:
    print("peak_traced %d" % (peak if mem_alloc is not None else tracemalloc.get_traced_memory()[1]))
