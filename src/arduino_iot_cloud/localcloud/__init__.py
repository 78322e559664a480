"""The local cloud (CPython only): a real mosquitto on 127.0.0.1 with a generated CA,
and a cloud emulator speaking both attach variants of the device protocol.

Independent of the device library's protocol code (it uses cbor2 and paho-mqtt
directly), so a bug in the device's codec cannot hide itself in end-to-end tests.

Modules, one job each: :mod:`.pki` (CA and certificates, openssl CLI),
:mod:`.broker` (mosquitto config, password/ACL files, process), :mod:`.wire`
(SenML and commands on cbor2), :mod:`.logwatch` (connect/subscribe events from
the broker log), :mod:`.store` (device database), :mod:`.emulator` (the cloud's
protocol side), :mod:`.cloud` (:class:`LocalCloud`, all of it together),
:mod:`.control` (the CLI's connection to a running cloud), :mod:`.cli`; for OTA updates
:mod:`.otaserver` (the HTTPS file server), :mod:`.otawire` (the OTA commands),
:mod:`.otacli` (the ``ota`` command).

How the CLI reaches a cloud that ``run`` keeps in another terminal
------------------------------------------------------------------
``run`` writes ``run.json`` (pid, ports) in the work directory and keeps a third,
plain-MQTT listener on 127.0.0.1 for an admin user whose random password lives in
``admin.json`` (mode 0600).  Devices cannot use it, and the device ACL keeps them
off ``localcloud/#``.  On that listener the emulator publishes each device's state
(thing, connection, library version, last values) as retained JSON on
``localcloud/state/<device_id>``: ``get`` reads it, ``watch`` follows it.
``set``, ``detach``, ``reassign`` and ``timezone`` are requests on
``localcloud/ctl/<op>`` with a ``reply_to`` topic.  ``add-device`` writes the
device files itself (under a file lock) and then asks the running cloud to
``reload``, so a secret never travels over MQTT.  Without a running cloud,
``get`` and ``list`` read ``devices.json`` (last values are saved at stop).
"""

from ..localcloud_entry import EXTRA_HINT

try:
    import paho.mqtt.client  # noqa: F401  (the emulator and the CLI's control client use it)
except ImportError:
    raise ImportError(EXTRA_HINT) from None

from .cloud import LocalCloud, running_instance  # noqa: E402
from .store import Device  # noqa: E402

__all__ = ["LocalCloud", "Device", "running_instance"]
