"""The client running under the MicroPython unix port (sync mode, keepalive 2 s),
through the fault proxy: it recovers from a drop, a reset and a black-hole on
its own, finds the black-holed link within 2 x keepalive, gets the dashboard
writes (including one made while it was cut off), and the cloud ends with its
last counter value."""

import os
import queue
import shutil
import subprocess
import threading
import time

import pytest

from test_faults import KEEPALIVE, report

pytestmark = pytest.mark.e2e

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", "..", "src"))


class MpyDevice:
    def __init__(self, cloud, proxy, tmp_path):
        exe = shutil.which("micropython")
        if exe is None:
            pytest.skip("micropython (unix port) is not installed")
        self.dev = cloud.add_device(auth="password", variant="both")
        self.stopfile = str(tmp_path / "stop")
        env = {"MICROPYPATH": "%s:.frozen" % SRC, "PATH": os.environ.get("PATH", "")}
        self.proc = subprocess.Popen(
            [exe, os.path.join(HERE, "mpy_device.py"), self.dev.device_id, self.dev.secret, str(proxy.port),
             cloud.ca_file, self.stopfile],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines = queue.Queue()
        self.seen = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put((time.monotonic(), line.rstrip("\n")))
        self.lines.put((time.monotonic(), None))

    def mark(self):
        return len(self.seen)

    def expect(self, prefix, timeout, since=None):
        """Wait for a line starting with prefix; return (time received, line).

        With since=mark(), lines already read after that mark count too."""
        if since is not None:
            for t, line in self.seen[since:]:
                if line.startswith(prefix):
                    return t, line
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no %r line within %.1f s; seen: %s" % (prefix, timeout, [ln for _t, ln in self.seen[-15:]]))
            try:
                t, line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("device exited; last lines: %s" % [ln for _t, ln in self.seen[-15:]])
            self.seen.append((t, line))
            if line.startswith(prefix):
                return t, line

    def stop(self):
        with open(self.stopfile, "w"):
            pass

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def test_micropython_device_recovers(local_cloud, fault_proxy, tmp_path):
    cloud, proxy = local_cloud, fault_proxy
    d = MpyDevice(cloud, proxy, tmp_path)
    try:
        d.expect("LINK up", 20)
        figures = {"fault": "micropython", "mode": "sync", "keepalive_s": KEEPALIVE}
        for fault in ("drop", "reset"):
            t0 = time.monotonic()
            getattr(proxy, fault)()
            d.expect("LINK down", 5)
            t_up, _ = d.expect("LINK up", 15)
            figures["%s_reattach_s" % fault] = round(t_up - t0, 3)
        cloud.set(d.dev, "msg", "hello board")
        d.expect("WRITE hello board", 10)
        t0 = time.monotonic()
        since = d.mark()
        proxy.blackhole()
        cloud.set(d.dev, "msg", "written while cut off")
        t_down, _ = d.expect("LINK down", 4 * KEEPALIVE)
        figures["blackhole_detect_s"] = round(t_down - t0, 3)
        assert t_down - t0 <= 2 * KEEPALIVE, figures
        healed = time.monotonic()
        proxy.heal()
        t_up, _ = d.expect("LINK up", 15)
        figures["blackhole_reattach_after_heal_s"] = round(t_up - healed, 3)
        d.expect("WRITE written while cut off", 10, since=since)
        d.stop()
        _, final = d.expect("FINAL", 10)
        n = int(final.split()[1])
        assert n > 10
        cloud.wait_for(d.dev, "counter", n, timeout=10)
        d.expect("STOPPED", 10)
        assert d.proc.wait(10) == 0
        figures["final_counter"] = n
        report(**figures)
    finally:
        d.kill()
