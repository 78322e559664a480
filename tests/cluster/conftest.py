"""Cluster tests: real RabbitMQ nodes (the Debian package's binaries, never its service) and a
real HAProxy, all on 127.0.0.1.  Skipped when either is missing, except under CI, where a
missing part fails the test (``.ci/setup`` installs both)."""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # cluster_helpers

RABBIT_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


@pytest.fixture
def time_limit():
    """Seconds a whole test here may take (the alarm is in tests/conftest.py)."""
    return 300


@pytest.fixture
def cluster_parts():
    missing = [name for name, ok in (("rabbitmq-server", os.path.exists(RABBIT_SERVER)),
                                     ("haproxy", shutil.which("haproxy") is not None)) if not ok]
    if missing:
        if os.environ.get("CI"):
            pytest.fail("missing under CI: %s (run .ci/setup)" % ", ".join(missing))
        pytest.skip("not installed: %s" % ", ".join(missing))
    pytest.importorskip("paho.mqtt")


@pytest.fixture
def clean_env(monkeypatch):
    """No ARDUINO_IOT_CLOUD_* overrides: the client's own server/port/CA arguments count."""
    for name in ("ARDUINO_IOT_CLOUD_SERVER", "ARDUINO_IOT_CLOUD_PORT", "ARDUINO_IOT_CLOUD_CA"):
        monkeypatch.delenv(name, raising=False)
