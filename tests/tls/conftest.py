"""TLS refusal tests: a PKI made with openssl for the purpose, a mosquitto
serving it, a time limit per test."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

TEST_TIME_LIMIT = 60


@pytest.fixture
def time_limit():
    """Seconds a whole test here may take (the alarm is in tests/conftest.py)."""
    return TEST_TIME_LIMIT


@pytest.fixture(scope="session")
def tls_broker(tmp_path_factory):
    import tlsenv

    if tlsenv._mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    pki = tlsenv.make_pki(tmp_path_factory.mktemp("tlspki"))
    broker = tlsenv.TlsBroker(pki).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("ARDUINO_IOT_CLOUD_SERVER", "ARDUINO_IOT_CLOUD_PORT", "ARDUINO_IOT_CLOUD_CA"):
        monkeypatch.delenv(name, raising=False)
