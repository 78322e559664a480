"""TLS refusal tests: a PKI made with openssl for the purpose, a mosquitto
serving it, a time limit per test."""

import os
import signal
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

TEST_TIME_LIMIT = 60


@pytest.fixture(autouse=True)
def _time_limit():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise TimeoutError("TLS test exceeded %d s" % TEST_TIME_LIMIT)

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIME_LIMIT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


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
