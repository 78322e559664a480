"""Per-test time limit for the local cloud tests, and the plain paho "device" helper."""

import os
import signal
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

TEST_TIME_LIMIT = 20  # seconds; each test normally takes well under one


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
def paho_device(local_cloud):
    """``paho_device(dev, **kw)`` -> a connected-on-demand PahoDevice, closed after the test."""
    from lc_pahodevice import PahoDevice

    made = []

    def make(dev, **kw):
        d = PahoDevice(local_cloud, dev, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()
