"""Fault tests: a time limit per test, the fault proxy, and in-process devices."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Per test; the full soak gets 0.1 s per message on top.
TEST_TIME_LIMIT = int(os.environ.get("FAULT_TEST_TIME_LIMIT", "120")) + int(os.environ.get("SOAK_MESSAGES", "0")) // 10


@pytest.fixture
def time_limit():
    """Seconds a whole test here may take (the alarm is in tests/conftest.py)."""
    return TEST_TIME_LIMIT


@pytest.fixture
def clean_env(monkeypatch):
    """No ARDUINO_IOT_CLOUD_* overrides: the client's own server/port/CA arguments count."""
    for name in ("ARDUINO_IOT_CLOUD_SERVER", "ARDUINO_IOT_CLOUD_PORT", "ARDUINO_IOT_CLOUD_CA"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fault_proxy(local_cloud):
    """A FaultProxy in front of the local cloud's password listener."""
    from proxy import FaultProxy

    p = FaultProxy(local_cloud.host, local_cloud.password_port).start()
    try:
        yield p
    finally:
        p.stop()
        assert not p.threads(), "proxy threads left behind: %r" % p.threads()


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A CA and a server certificate for 127.0.0.1 (the local cloud's Pki), for rogue brokers."""
    from arduino_iot_cloud.localcloud.pki import Pki

    ca = Pki(tmp_path_factory.mktemp("rogue-pki"))
    ca.ensure()
    return ca


@pytest.fixture
def broker(pki):
    """``broker(script)`` -> a started rogue.RogueBroker (tests/faults/rogue.py), stopped after the test."""
    import rogue

    made = []

    def make(script):
        b = rogue.RogueBroker(str(pki.server_cert), str(pki.server_key), script).start()
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()

