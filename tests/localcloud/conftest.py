"""Per-test time limit for the local cloud tests, and the plain paho "device" helper."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

TEST_TIME_LIMIT = 20  # seconds; each test normally takes well under one


@pytest.fixture
def time_limit():
    """Seconds a whole test here may take (the alarm is in tests/conftest.py)."""
    return TEST_TIME_LIMIT


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
