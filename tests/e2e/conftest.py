"""Fixtures of the end-to-end tests: a time limit per test, no ARDUINO_IOT_CLOUD_*
variables from the caller's environment, ``driven`` (in-process device drivers) and
``scripts`` (device scripts in subprocesses)."""


import pytest

from e2e_helpers import TEST_TIME_LIMIT, Driver, scripts  # noqa: F401  (scripts: a fixture)


@pytest.fixture
def time_limit():
    """Seconds a whole test here may take (the alarm is in tests/conftest.py)."""
    return TEST_TIME_LIMIT


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
