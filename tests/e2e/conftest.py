"""Fixtures of the end-to-end tests: a time limit per test, no ARDUINO_IOT_CLOUD_*
variables from the caller's environment, ``driven`` (in-process device drivers) and
``scripts`` (device scripts in subprocesses)."""

import signal
import threading

import pytest

from e2e_helpers import TEST_TIME_LIMIT, Driver, ScriptProcess


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


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    # The tests name server, port and CA explicitly.
    for name in ("ARDUINO_IOT_CLOUD_SERVER", "ARDUINO_IOT_CLOUD_PORT", "ARDUINO_IOT_CLOUD_CA"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def driven():
    """``drive(client)`` -> a started Driver; stopped after the test."""
    drivers = []

    async def drive(client):
        d = Driver(client)
        drivers.append(d)
        await d.start()
        return d

    yield drive
    for d in drivers:
        await d.stop()


@pytest.fixture
def scripts(tmp_path):
    """``start(argv, env)`` -> a ScriptProcess; every one is stopped (terminate, then kill) after the test."""
    started = []

    def start(argv, env):
        proc = ScriptProcess(argv, env, tmp_path / ("script-%d.log" % len(started)))
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()
