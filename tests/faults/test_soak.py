"""Soak: N dashboard writes in and N device values out, in one process, through
the fault proxy, which drops, resets, cuts and delays the link along the way.

Checks: no lost final value either way; every value on_write saw was one the
dashboard wrote, in increasing order within a connection; the client's own
memory (tracemalloc, library files only) is flat between the first fifth
of the run and the end; no leaked sockets, threads or asyncio tasks after stop.

The default run uses SOAK_SHORT messages (500, well under a minute per mode).
The full run (`make soak`: SOAK_MESSAGES=10000, -m slow) is skipped unless
SOAK_MESSAGES is set.  Figures are printed (-s) and appended to FAULT_REPORT.
"""

import gc
import logging
import os
import threading
import time
import tracemalloc

import pytest

from devrunner import DeviceRunner, wait_until
from test_faults import KEEPALIVE, RECONNECT_CAP, report

pytestmark = pytest.mark.e2e

SOAK_SHORT = 500
# Growth of the library's own traced memory allowed between the 20 % mark
# and the end; a leak of 4 bytes per message would exceed it at 10,000 (measured: 2.6-4.5 KB).
FLAT_BYTES = 32 * 1024
FAULT_EVERY = 100  # messages between two faults


def _socket_fds():
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink("/proc/self/fd/" + fd).startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def _library_snapshot():
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces((
        tracemalloc.Filter(True, "*/arduino_iot_cloud/*"),
        tracemalloc.Filter(False, "*/arduino_iot_cloud/localcloud/*"),
    ))


def _size(snap):
    return sum(stat.size for stat in snap.statistics("filename"))


def _top_growth(before, after, n=5):
    return ["%s:%d %+d B (%+d blocks)" % (st.traceback[0].filename.rsplit("/", 2)[-1], st.traceback[0].lineno,
                                         st.size_diff, st.count_diff)
            for st in after.compare_to(before, "lineno")[:n]]


class _FormatAndDrop(logging.Handler):
    def emit(self, record):
        self.format(record)


@pytest.fixture
def library_logs_not_kept():
    # pytest keeps every log record of a test, and a record keeps its arguments
    # (an exception with its traceback and frames) alive: that would count as
    # growth of the library's memory.  Format the records, keep none.
    log = logging.getLogger("arduino_iot_cloud")
    handler = _FormatAndDrop()
    saved = log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = saved


class Writes:
    """What on_write saw, without keeping every value (that would grow)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.count = 0
        self.last = None
        self.unknown = 0

    def on_write(self, client, value):
        with self.lock:
            self.count += 1
            if not isinstance(value, int) or value < 1:
                self.unknown += 1
            self.last = value


def soak(n, mode, cloud, proxy):
    from arduino_iot_cloud import ArduinoCloudClient

    sockets_before = _socket_fds()
    threads_before = set(threading.enumerate())
    dev = cloud.add_device(auth="password", variant="command" if mode == "async" else "event")
    writes = Writes()
    client = ArduinoCloudClient(dev.device_id, password=dev.secret, server="127.0.0.1", port=proxy.port,
                                keepalive=KEEPALIVE, sync_mode=(mode == "sync"),
                                ssl_params={"cafile": cloud.ca_file}, reconnect_cap=RECONNECT_CAP)
    client.register("counter", value=0)
    client.register("setpoint", value=0, on_write=writes.on_write)
    runner = DeviceRunner(client)

    tracemalloc.start(5)
    t_start = time.monotonic()
    runner.start()
    wait_until(lambda: client.connected, 15, what="first attach")
    faults = ("drop", "reset", "cut-down", "cut-up", "delay")
    injected = []
    hits = 0
    mark = None
    max_links = 0
    for i in range(1, n + 1):
        runner.set("counter", i)
        cloud.set(dev, "setpoint", i)
        max_links = max(max_links, len(proxy.links()))
        if i == max(1, n // 5):
            mark = _library_snapshot()
        if i % FAULT_EVERY == 0 and i < n:
            fault = faults[(i // FAULT_EVERY - 1) % len(faults)]
            injected.append(fault)
            # Each fault meets a live, attached link (not one still recovering
            # from the previous fault), so each drop/reset forces a reconnect.
            wait_until(lambda: client.connected and proxy.links(), 30, what="attached before a fault")
            if fault in ("drop", "reset"):
                hits += 1
            if fault == "drop":
                proxy.drop()
            elif fault == "reset":
                proxy.reset()
            elif fault == "cut-down":
                proxy.cut("down")
            elif fault == "cut-up":
                proxy.cut("up")
            elif fault == "delay":
                proxy.delay(0.2)
        elif i % FAULT_EVERY == FAULT_EVERY // 2:
            proxy.heal()
    proxy.heal()
    # Disarm cuts that never met a chunk, so the end phase runs on a clean link.
    for link in proxy.links():
        link.cut["up"] = link.cut["down"] = False

    sent_s = time.monotonic() - t_start
    cloud.wait_for(dev, "counter", n, timeout=30)
    wait_until(lambda: writes.last == n and client.connected, 30, what="last dashboard write applied")
    total_s = time.monotonic() - t_start
    end = _library_snapshot()
    mark_bytes, end_bytes = _size(mark), _size(end)
    process_bytes = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    history = cloud.history(dev, "counter")
    runner.stop()
    assert runner.error is None, runner.error
    if mode == "async":
        assert runner.leftover_tasks == [], runner.leftover_tasks
    assert client.engine.conn is None
    # No lost final value, either way.
    assert cloud.get(dev, "counter") == n
    assert writes.last == n and writes.unknown == 0
    # Memory: the library's traced allocations stay flat.
    growth = end_bytes - mark_bytes
    # Nothing leaked: threads and sockets back to where they were.
    # The client closed its socket: the proxy sees EOF and closes its pair too.
    wait_until(lambda: not proxy.links(), 5, what="proxy links closed")
    wait_until(lambda: not [t for t in threading.enumerate() if t not in threads_before and t.is_alive()],
               5, what="threads started during the soak gone")
    sockets_after = _socket_fds()
    figures = dict(fault="soak", mode=mode, messages=n, faults=len(injected), drop_reset_hits=hits,
                   reconnects=proxy.accepted - 1,
                   values_out_received=len(history), writes_in_applied=writes.count,
                   send_phase_s=round(sent_s, 2), total_s=round(total_s, 2),
                   library_bytes_at_20pct=mark_bytes, library_bytes_at_end=end_bytes, growth_bytes=growth,
                   process_traced_now=process_bytes[0], process_traced_peak=process_bytes[1],
                   max_parallel_links=max_links, sockets_before=sockets_before, sockets_after=sockets_after,
                   top_growth=_top_growth(mark, end))
    report(**figures)
    assert growth < FLAT_BYTES, figures
    assert max_links <= 2, figures  # at most the dying link and its replacement
    assert sockets_after <= sockets_before, figures
    # The faults really broke links: each drop/reset was followed by a new connection.
    assert hits and proxy.accepted - 1 >= hits, figures
    return figures


@pytest.mark.parametrize("mode", ("async", "sync"))
def test_soak_short(mode, local_cloud, fault_proxy, clean_env, library_logs_not_kept):
    soak(SOAK_SHORT, mode, local_cloud, fault_proxy)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SOAK_MESSAGES"), reason="full soak: set SOAK_MESSAGES (make soak)")
@pytest.mark.parametrize("mode", ("async", "sync"))
def test_soak_full(mode, local_cloud, fault_proxy, clean_env, library_logs_not_kept):
    soak(int(os.environ["SOAK_MESSAGES"]), mode, local_cloud, fault_proxy)
