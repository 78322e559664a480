"""Shared fixtures: the local cloud (a real mosquitto + cloud emulator) for end-to-end tests.

``local_cloud`` (session): a started :class:`arduino_iot_cloud.localcloud.LocalCloud`
in a temporary directory, stopped at the end of the session (also on failures).
``device_factory`` (function): ``make(auth="password", variant="both", thing_id=None,
properties=None, **kw)`` -> a new Device on that cloud (see ``LocalCloud.add_device``).

Tests using them are skipped when mosquitto or paho-mqtt is missing.

Every test also runs under a wall-clock alarm (``_time_limit``), so a hang fails
that test instead of blocking the suite.  A directory sets its own limit by
overriding the ``time_limit`` fixture.
"""

import os
import shutil
import signal
import threading

import pytest


class TestTimeLimitExceeded(BaseException):
    """Raised by the alarm.  A BaseException, so that no `except Exception`
    in the code under test can swallow it."""


@pytest.fixture
def time_limit():
    """Seconds a whole test may take; directories override this."""
    return 120


@pytest.fixture(autouse=True)
def _time_limit(time_limit):
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(signum, frame):
        raise TestTimeLimitExceeded("test exceeded its time limit of %d s" % time_limit)

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(time_limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="session")
def local_cloud(tmp_path_factory):
    """A running local cloud, shared by the whole session."""
    if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
        pytest.skip("mosquitto is not installed")
    pytest.importorskip("paho.mqtt")
    from arduino_iot_cloud.localcloud import LocalCloud

    cloud = LocalCloud(tmp_path_factory.mktemp("localcloud"))
    cloud.start()
    try:
        yield cloud
    finally:
        cloud.stop()


@pytest.fixture
def device_factory(local_cloud):
    """Make devices on the session's local cloud: ``device_factory(auth="cert", variant="command")``."""
    made = []

    def make(auth="password", variant="both", thing_id=None, properties=None, **kw):
        dev = local_cloud.add_device(auth=auth, variant=variant, thing_id=thing_id, properties=properties, **kw)
        made.append(dev)
        return dev

    yield make
