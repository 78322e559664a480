"""Shared fixtures: the local cloud (a real mosquitto + cloud emulator) for end-to-end tests.

``local_cloud`` (session): a started :class:`arduino_iot_cloud.localcloud.LocalCloud`
in a temporary directory, stopped at the end of the session (also on failures).
``device_factory`` (function): ``make(auth="password", variant="both", thing_id=None,
properties=None, **kw)`` -> a new Device on that cloud (see ``LocalCloud.add_device``).

Tests using them are skipped when mosquitto or paho-mqtt is missing.
"""

import os
import shutil

import pytest


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
