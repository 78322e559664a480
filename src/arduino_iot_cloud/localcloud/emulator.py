"""The cloud emulator: the cloud's side of the device protocol, over paho-mqtt.

Theory of operation
-------------------
One paho client, connected to the broker's admin listener, runs in paho's own
background thread (this is CPython-only test infrastructure).  It subscribes to
everything devices send::

    /a/d/+/c/up          commands (DeviceBegin, ThingBegin, LastValuesBegin, TimezoneCommandUp, ...)
    /a/t/+/e/o           property values (SenML CBOR)
    /a/t/+/shadow/o      getLastValues requests (older variant)

and answers per device ``variant``:

* ``"event"`` (older, Python 1.4.1): ``thing_id``/``tz_offset``/``tz_dst_until``
  published *retained* on ``/a/d/<dev>/e/i`` (again after every reconnect, as the
  broker keeps no state over a restart); last values on ``shadow/i``;
* ``"command"`` (newer, C++ 2.x): ThingUpdate, LastValuesUpdate and
  TimezoneCommandDown on ``/a/d/<dev>/c/dw``;
* ``"both"``: all of the above.

Choices docs/protocol.md leaves open: the retained ``e/i`` pack always holds all three
records, with ``thing_id`` "" when the device has no thing (also after a detach);
a timezone change republishes the whole pack (a device must treat an unchanged
thing_id as a no-op); LastValuesBegin from a device without a thing goes
unanswered; LastValuesUpdate / ``shadow/i`` carry a definite array with doubles.

Each thing keeps ``values`` (the cloud's last value per property: initial values,
device reports and dashboard writes; what last-values answers carry),
``reported`` (the last value the device itself published) and a bounded history of
reports.  Each device keeps an ordered event list (device messages, plus connects,
subscriptions and disconnects read from the broker log by :mod:`.logwatch`).

Bounds: a device cannot make the emulator keep more than ``MAX_PROPERTIES``
properties on its thing, values over ``MAX_VALUE_BYTES`` or a thing's names and values
over ``MAX_THING_BYTES`` in total; reports beyond that are dropped and counted
(:meth:`CloudEmulator.dropped`), with one warning per device and reason.  History
and events are bounded in entries and in (approximate) bytes, oldest dropped
first, and events keep at most ``PAYLOAD_KEPT`` bytes of a bad payload.

Retained messages: devices may only write topics that the cloud alone reads (the
broker's ACL, :mod:`.broker`), so a retained message from a device could only
come back to the cloud itself, at its next subscribe.  The emulator subscribes
with MQTT 5's "retain as published" to see the flag, ignores such messages
(event ``retained_refused``) and clears them from the broker at once.

For the CLI, every device's state is also published as retained JSON on
``localcloud/state/<device_id>``, and requests on ``localcloud/ctl/<op>`` are
handed to a control handler (in a worker thread, so it may block); devices cannot
reach ``localcloud/#`` (ACL).

All state sits behind one condition variable; waits (:meth:`wait_for`,
:meth:`wait_event`, :meth:`barrier`) are condition waits, never sleeps.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import queue
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, Union

import paho.mqtt.client as mqtt

from . import otawire, wire
from .broker import MESSAGE_SIZE_LIMIT
from .logwatch import LogWatch
from .store import Device

log = logging.getLogger(__name__)

# What one thing / one device may make the emulator keep (see the module docstring).
MAX_PROPERTIES = 1000
MAX_VALUE_BYTES = 64 * 1024
MAX_THING_BYTES = 1024 * 1024
HISTORY_MAX = 20000           # reports kept per thing, all properties together
HISTORY_BYTES = 4 * 1024 * 1024
EVENTS_MAX = 20000            # events kept per device
EVENTS_BYTES = 4 * 1024 * 1024
PAYLOAD_KEPT = 256            # bytes of a malformed payload kept in its event
TEXT_KEPT = 300               # characters of an error text kept in an event
STATE_TOPIC = "localcloud/state/%s"
STATE_INTERVAL = 0.05  # seconds: retained state messages are coalesced to at most one per interval
CTL_TOPIC = "localcloud/ctl/"
OTA_TOPIC = "localcloud/ota/%s"  # each OTA event of a device, as JSON, for the CLI's `ota` command

# Topics devices write (and only the cloud reads): what the emulator serves.
DEVICE_WRITTEN = ("/a/d/+/c/up", "/a/t/+/e/o", "/a/t/+/shadow/o")

DeviceRef = Union[Device, str]
ControlHandler = Callable[[str, Dict[str, Any]], Any]
# A listener hears every event as (device_id, time, kind, detail), plus ("added", None) for a
# new device; it runs under the emulator's lock in its threads, so it must only hand off.
Listener = Callable[[str, float, str, Any], None]
_MISSING = object()
# Broker-wide events (refused logins, reloads, messages on unowned things) are kept as the
# events of this reserved name, which no device id can take (ids are UUIDs).
BROKER = "<broker>"


def values_match(value: Any, expected: Any) -> bool:
    """Equality that forgives single-precision rounding (devices send 4-byte floats)."""
    if callable(expected):
        return bool(expected(value))
    if isinstance(value, dict) and isinstance(expected, dict):
        return value.keys() == expected.keys() and all(values_match(value[k], expected[k]) for k in value)
    numbers = (int, float)
    if (isinstance(value, numbers) and isinstance(expected, numbers)
            and not isinstance(value, bool) and not isinstance(expected, bool)):
        return math.isclose(value, expected, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(value, bool) or isinstance(expected, bool):
        return type(value) is type(expected) and value == expected
    return value == expected


def approx_size(obj: Any) -> int:
    """Rough bytes a decoded value takes as data (strings and bytes by length, 8 per scalar)."""
    if isinstance(obj, (str, bytes, bytearray)):
        return len(obj) + 8
    if isinstance(obj, dict):
        return 8 + sum(approx_size(k) + approx_size(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return 8 + sum(approx_size(v) for v in obj)
    return 8


class BoundedLog:
    """A FIFO of items kept within ``max_items`` and ``max_bytes`` (oldest dropped first)."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.items: Deque[Any] = collections.deque()
        self._sizes: Deque[int] = collections.deque()
        self.bytes = 0
        self.max_items, self.max_bytes = max_items, max_bytes

    def append(self, item: Any, size: int) -> List[Any]:
        """Add ``item``; return the items dropped to make room (the newest always stays)."""
        self.items.append(item)
        self._sizes.append(size)
        self.bytes += size
        dropped = []
        while len(self.items) > 1 and (len(self.items) > self.max_items or self.bytes > self.max_bytes):
            dropped.append(self.items.popleft())
            self.bytes -= self._sizes.popleft()
        return dropped

    def __iter__(self):
        return iter(self.items)


class ThingState:
    """One thing's properties: cloud values, device reports, report history."""

    def __init__(self, values: Optional[Dict[str, Any]] = None) -> None:
        self.values: Dict[str, Any] = dict(values or {})
        self.reported: Dict[str, Any] = {}
        self.history: Dict[str, Deque[Tuple[float, Any]]] = {}
        self.reports: Dict[str, int] = {}  # total reports per property, for wait_for
        self._order = BoundedLog(HISTORY_MAX, HISTORY_BYTES)  # property names, oldest report first
        self._values_bytes: Optional[int] = None  # approx_size of all values; None = to be counted

    def merged(self, name: str, value: Any) -> Any:
        """What ``name`` would hold after ``value`` (composite fields merge into the stored dict)."""
        prev = self.values.get(name)
        return dict(prev, **value) if isinstance(value, dict) and isinstance(prev, dict) else value

    def refusal(self, name: str, value: Any) -> Optional[str]:
        """Why a report of ``name = value`` from the device would break the thing's bounds, or None."""
        size = approx_size(self.merged(name, value))
        if size > MAX_VALUE_BYTES:
            return "value_size"
        if name not in self.values and len(self.values) >= MAX_PROPERTIES:
            return "properties"
        if self._values_bytes is None:
            self._values_bytes = sum(self._size_of(n) for n in self.values)
        if self._values_bytes - self._size_of(name) + approx_size(name) + size > MAX_THING_BYTES:
            return "thing_size"
        return None

    def write(self, name: str, value: Any) -> Any:
        """Set the cloud's value of ``name`` (see :meth:`merged`); return what it holds now."""
        stored = self.merged(name, value)
        if self._values_bytes is not None:
            self._values_bytes += approx_size(name) + approx_size(stored) - self._size_of(name)
        self.values[name] = stored
        return stored

    def _size_of(self, name: str) -> int:
        """What ``name`` and its value count towards MAX_THING_BYTES (0 if it has no value)."""
        return approx_size(name) + approx_size(self.values[name]) if name in self.values else 0

    def report(self, name: str, value: Any, when: float) -> None:
        """Record a value the device published (composite fields merge into the stored dict)."""
        stored = self.write(name, value)
        self.reported[name] = stored
        self.history.setdefault(name, collections.deque()).append((when, value))
        self.reports[name] = self.reports.get(name, 0) + 1
        for old in self._order.append(name, approx_size(value) + 16):
            self.history[old].popleft()


class CloudEmulator:
    """The cloud side of the device protocol, on the admin listener at ``host:port``.

    ``log_file`` is mosquitto's log, followed for connect/subscribe events (optional).
    ``tls_ca``: connect over TLS, checking the broker against this CA file (any broker,
    e.g. a RabbitMQ node; see :mod:`.cluster`).
    """

    def __init__(self, host: str, port: int, username: str, password: str,
                 log_file: Optional[Path] = None, tls_ca: Optional[str] = None, mqtt5: bool = True) -> None:
        self.host, self.port = host, port
        self._cond = threading.Condition(threading.RLock())
        self.devices: Dict[str, Device] = {}
        self.things: Dict[str, ThingState] = {}
        self._events: Dict[str, BoundedLog] = {}  # of (seq, time, kind, detail)
        self._dropped: Dict[str, Dict[str, int]] = {}  # device id -> reason -> reports dropped
        self._event_count: Dict[str, int] = {}
        self._client_ids: Dict[str, str] = {}  # MQTT client id -> device id
        self._generation = 0  # completed (re)connects
        self._pongs: set = set()
        self.control_handler: Optional[ControlHandler] = None
        self.ota_shas: Dict[str, str] = {}  # device id -> SHA-256 (hex) of its last OtaBeginUp
        self.listeners: List[Listener] = []  # the web dashboard (localcloud/web)
        # Also called with every retained device-info message (topic, payload): a broker that keeps
        # retained messages per node (RabbitMQ) needs them on every node, see .cluster.
        self.retain_publisher: Optional[Callable[[str, bytes], None]] = None
        self._ctl_queue: "queue.Queue[Optional[Tuple[str, Dict[str, Any]]]]" = queue.Queue()
        self._ctl_thread: Optional[threading.Thread] = None
        self._dirty: set = set()
        self._state_wakeup = threading.Event()
        self._stopping = threading.Event()
        self._state_thread: Optional[threading.Thread] = None
        self._name = "localcloud-emulator-%s" % secrets.token_hex(4)
        self._ping_topic = "localcloud/ping/%s" % self._name
        self._logwatch = LogWatch(log_file, self._on_log) if log_file is not None else None
        # MQTT 5 for "retain as published": the only way to see that a device set the retain flag.
        # A broker with MQTT 3.1.1 only (RabbitMQ 3.10, .cluster) gets mqtt5=False: there a
        # retained device message is seen (and cleared) only when the emulator subscribes.
        self._mqtt5 = mqtt5
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self._name,
                        protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311)
        c.username_pw_set(username, password)
        if tls_ca is not None:
            c.tls_set(ca_certs=tls_ca)
        c.reconnect_delay_set(min_delay=0.05, max_delay=0.5)  # type: ignore[arg-type]
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self._client = c

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Connect, subscribe, publish retained device info; return when all of that is done."""
        if self._logwatch is not None:
            self._logwatch.start()
        self._ctl_thread = threading.Thread(target=self._ctl_worker, name="localcloud-ctl", daemon=True)
        self._ctl_thread.start()
        self._state_thread = threading.Thread(target=self._state_worker, name="localcloud-state", daemon=True)
        self._state_thread.start()
        if self._mqtt5:
            self._client.connect(self.host, self.port, keepalive=30, clean_start=True)
        else:
            self._client.connect(self.host, self.port, keepalive=30)  # MQTT 3.1.1: clean session by default
        self._client.loop_start()
        self.wait_connected(0, timeout)

    def stop(self) -> None:
        """Disconnect and stop the background threads."""
        self._stopping.set()
        self._state_wakeup.set()
        if self._state_thread is not None:
            self._state_thread.join(2)
            self._state_thread = None
        self._client.disconnect()
        self._client.loop_stop()
        self._ctl_queue.put(None)
        if self._ctl_thread is not None:
            self._ctl_thread.join(2)
            self._ctl_thread = None
        if self._logwatch is not None:
            self._logwatch.stop()

    @property
    def generation(self) -> int:
        """How many times the emulator has (re)connected and republished its state."""
        with self._cond:
            return self._generation

    def wait_connected(self, after_generation: int, timeout: float = 10.0) -> None:
        """Wait for a connect newer than ``after_generation``, then for a broker round trip."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._generation > after_generation, timeout):
                raise TimeoutError("cloud emulator did not connect to the broker at %s:%d within %.0f s"
                                   % (self.host, self.port, timeout))
        self.barrier(timeout)

    def barrier(self, timeout: float = 5.0) -> None:
        """Wait until the broker has processed everything this emulator sent so far.

        Publishes a QoS 1 ping to itself: mosquitto handles one client's packets in
        order, so once the ping comes back, earlier subscriptions and retained
        publishes are in place.  Never call this from paho's thread.
        """
        nonce = secrets.token_hex(8)
        self._client.publish(self._ping_topic, nonce, qos=1)
        with self._cond:
            if not self._cond.wait_for(lambda: nonce in self._pongs, timeout):
                raise TimeoutError("no round trip through the broker within %.1f s" % timeout)
            self._pongs.discard(nonce)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if rc.is_failure:
            log.error("cloud emulator refused by the broker: %s", rc)
            return
        sock = client.socket()
        if sock is not None and hasattr(sock, "setsockopt"):
            # paho leaves Nagle on; the cloud's answers are small and awaited.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._mqtt5:
            as_published = mqtt.SubscribeOptions(qos=1, retainAsPublished=True)
            client.subscribe([(t, as_published) for t in DEVICE_WRITTEN]
                             + [(CTL_TOPIC + "+", mqtt.SubscribeOptions(qos=1)),
                                (self._ping_topic, mqtt.SubscribeOptions(qos=1))])
        else:
            client.subscribe([(t, 1) for t in DEVICE_WRITTEN] + [(CTL_TOPIC + "+", 1), (self._ping_topic, 1)])
        with self._cond:
            for dev in self.devices.values():
                self._publish_device_info(dev)
                self._publish_state(dev)
            self._generation += 1
            self._cond.notify_all()
        log.info("cloud emulator connected (generation %d)", self._generation)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        log.info("cloud emulator disconnected: %s", rc)

    # -- devices --------------------------------------------------------------------------------

    def add_device(self, dev: Device, values: Optional[Dict[str, Any]] = None) -> None:
        """Start serving ``dev``; ``values`` seed its thing's last values (if the thing is new)."""
        with self._cond:
            self.devices[dev.device_id] = dev
            self._events.setdefault(dev.device_id, BoundedLog(EVENTS_MAX, EVENTS_BYTES))
            self._event_count.setdefault(dev.device_id, 0)
            if dev.thing_id:
                thing = self.things.setdefault(dev.thing_id, ThingState())
                for name, value in (values or {}).items():
                    if name not in thing.values:
                        thing.write(name, value)
            self._publish_device_info(dev)
            self._publish_state(dev)
            self._notify(dev.device_id, time.time(), "added", None)

    def device(self, ref: DeviceRef) -> Device:
        """The emulator's Device for a Device or a device id (KeyError if unknown)."""
        device_id = ref.device_id if isinstance(ref, Device) else ref
        with self._cond:
            try:
                return self.devices[device_id]
            except KeyError:
                raise KeyError("unknown device %r" % device_id) from None

    def _owner(self, thing_id: str) -> Optional[Device]:
        for dev in self.devices.values():
            if dev.thing_id == thing_id:
                return dev
        return None

    def _thing(self, dev: Device) -> ThingState:
        if not dev.thing_id:
            return ThingState()
        return self.things.setdefault(dev.thing_id, ThingState())

    # -- events ---------------------------------------------------------------------------------

    def _event(self, device_id: str, kind: str, detail: Any) -> None:
        with self._cond:
            if device_id not in self._events:
                self._events[device_id] = BoundedLog(EVENTS_MAX, EVENTS_BYTES)
                self._event_count[device_id] = 0
            seq = self._event_count[device_id]
            self._event_count[device_id] = seq + 1
            now = time.time()
            self._events[device_id].append((seq, now, kind, detail), approx_size(detail) + 64)
            self._cond.notify_all()
            self._notify(device_id, now, kind, detail)
        log.debug("device %s: %s %r", device_id, kind, detail)

    def _notify(self, device_id: str, when: float, kind: str, detail: Any) -> None:
        for listener in self.listeners:
            try:
                listener(device_id, when, kind, detail)
            except Exception:  # a listener's bug must never stop the emulator
                log.exception("event listener failed")

    def _broker_event(self, kind: str, detail: Any) -> None:
        self._event(BROKER, kind, detail)

    def events(self, ref: DeviceRef, since: int = 0, timestamps: bool = False) -> List[Tuple]:
        """The device's events from mark ``since`` on, as ``(kind, detail)`` or ``(time, kind, detail)``."""
        device_id = ref.device_id if isinstance(ref, Device) else ref
        with self._cond:
            evs = [e for e in self._events.get(device_id, ()) if e[0] >= since]
        return [(e[1], e[2], e[3]) if timestamps else (e[2], e[3]) for e in evs]

    def mark(self, ref: DeviceRef) -> int:
        """A position in the device's event list, for ``events(since=)`` and ``wait_event(since=)``."""
        device_id = ref.device_id if isinstance(ref, Device) else ref
        with self._cond:
            return self._event_count.get(device_id, 0)

    def wait_event(self, ref: DeviceRef, kind: str, match: Any = _MISSING, since: int = 0,
                   timeout: float = 10.0) -> Any:
        """Wait for an event ``kind`` (detail matching ``match``: a value or a predicate) at or
        after mark ``since``; return its detail, or raise TimeoutError listing the events seen."""
        device_id = ref.device_id if isinstance(ref, Device) else ref
        found: List[Any] = []

        def check() -> bool:
            for seq, _, k, detail in self._events.get(device_id, ()):
                if seq >= since and k == kind and (match is _MISSING or values_match(detail, match)):
                    found.append(detail)
                    return True
            return False

        with self._cond:
            if self._cond.wait_for(check, timeout):
                return found[0]
        seen = self.events(device_id, since)
        raise TimeoutError("device %s: no %r event%s within %.1f s; events since mark %d: %s" % (
            device_id, kind, "" if match is _MISSING else " matching %r" % (match,), timeout, since,
            _short(seen)))

    # -- broker log -----------------------------------------------------------------------------

    def _on_log(self, kind: str, client_id: Optional[str], detail: Dict[str, Any]) -> None:
        with self._cond:
            if kind == "connect" and client_id is not None:
                device_id = detail.get("username") or client_id
                if device_id in self.devices:
                    self._client_ids[client_id] = device_id
                    self.devices[device_id].connected = True
                    self._event(device_id, "connect", detail)
                    self._publish_state(self.devices[device_id])
                return
            if client_id is None:
                self._broker_event(kind, detail)
                if kind == "broker_stop":
                    self._client_ids.clear()
                    for dev in self.devices.values():
                        if dev.connected:
                            dev.connected = False
                            self._event(dev.device_id, "disconnect", "broker stopped")
                            self._publish_state(dev)
                return
            device_id = self._client_ids.get(client_id)
            if device_id is None:
                return
            if kind == "disconnect":
                self._client_ids.pop(client_id, None)
                dev = self.devices.get(device_id)
                if dev is not None and device_id not in self._client_ids.values():
                    dev.connected = False
                    self._publish_state(dev)
                self._event(device_id, "disconnect", detail["reason"])
            else:
                self._event(device_id, kind, detail["topic"])

    # -- incoming messages ---------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic
        if topic == self._ping_topic:
            with self._cond:
                self._pongs.add(msg.payload.decode())
                self._cond.notify_all()
            return
        if topic.startswith(CTL_TOPIC):
            self._ctl_queue.put((topic[len(CTL_TOPIC):], msg.payload))
            return
        if self._logwatch is not None:
            self._logwatch.poll()  # connect/subscribe lines first: keeps events in causal order
        parts = topic.split("/")
        try:
            if msg.retain:
                self._refuse_retained(parts, msg.payload)
                return
            with self._cond:
                if len(parts) == 6 and parts[1:3] == ["a", "d"] and parts[4:] == ["c", "up"]:
                    self._on_command(parts[3], msg.payload)
                elif len(parts) == 6 and parts[1:3] == ["a", "t"] and parts[4:] == ["e", "o"]:
                    self._on_values(parts[3], msg.payload)
                elif len(parts) == 6 and parts[1:3] == ["a", "t"] and parts[4:] == ["shadow", "o"]:
                    self._on_shadow(parts[3], msg.payload)
        except Exception:  # a bad message must never stop the emulator
            log.exception("cloud emulator failed on a message on %s", topic)

    def _refuse_retained(self, parts: List[str], payload: bytes) -> None:
        """A device set the retain flag: do not act on the message, and clear it from the broker
        (an empty retained payload is that clearing, coming back to us)."""
        if not payload:
            return
        topic = "/".join(parts)
        self._client.publish(topic, b"", qos=1, retain=True)
        with self._cond:
            dev = None
            if len(parts) == 6 and parts[1:3] == ["a", "d"]:
                dev = self.devices.get(parts[3])
            elif len(parts) == 6 and parts[1:3] == ["a", "t"]:
                dev = self._owner(parts[3])
            detail = {"topic": topic, "size": len(payload)}
            if dev is None:
                self._broker_event("retained_refused", detail)
            else:
                self._event(dev.device_id, "retained_refused", detail)
                self._count_drop(dev, "retained", 1)

    def _count_drop(self, dev: Device, reason: str, n: int) -> None:
        """Count reports dropped for ``reason``; the first one is logged and recorded as an event."""
        counts = self._dropped.setdefault(dev.device_id, {})
        if reason not in counts:
            log.warning("device %s: dropping what it sends beyond a limit of the local cloud (%s); "
                        "counting further drops silently", dev.device_id, reason)
            self._event(dev.device_id, "limit", reason)
        counts[reason] = counts.get(reason, 0) + n

    def dropped(self, ref: DeviceRef) -> Dict[str, int]:
        """Reports of the device dropped so far, by reason: "properties" (too many names),
        "value_size", "thing_size" (the thing's values too large in total), "retained"."""
        with self._cond:
            return dict(self._dropped.get(self.device(ref).device_id, {}))

    def _on_command(self, device_id: str, payload: bytes) -> None:
        dev = self.devices.get(device_id)
        if dev is None:
            self._broker_event("unknown_device", {"device_id": device_id, "topic": "c/up"})
            return
        try:
            tag, fields = wire.decode_command(payload)
        except wire.WireError as exc:
            self._event(device_id, "bad_command", _bad(exc, payload))
            return
        first = fields[0] if fields else None
        if tag == wire.DEVICE_BEGIN:
            dev.library_version = first
            self._event(device_id, "device_begin", first)
            self._publish_state(dev)
        elif tag == wire.THING_BEGIN:
            self._event(device_id, "thing_begin", first)
            if dev.answers_commands:
                self._send(dev, "c/dw", wire.thing_update(dev.thing_id))
        elif tag == wire.LAST_VALUES_BEGIN:
            self._event(device_id, "last_values", "command")
            if dev.answers_commands and dev.thing_id:
                self._send(dev, "c/dw", wire.last_values_update(self._thing(dev).values))
        elif tag == wire.TIMEZONE_UP:
            self._event(device_id, "timezone_request", None)
            if dev.answers_commands:
                self._send(dev, "c/dw", wire.timezone_down(dev.tz_offset, dev.tz_dst_until))
        elif tag in otawire.UP_TAGS:
            self._on_ota(dev, tag, fields, payload)
        else:
            name = wire.COMMAND_NAMES.get(tag, "0x%06x" % tag)
            self._event(device_id, "command", {"name": name, "tag": tag, "fields": fields})

    def _thing_records(self, thing_id: str, payload: bytes, bad_kind: str) -> Optional[tuple]:
        """(owner device, decoded SenML records) of a message on a thing topic, or None
        after recording why not (no device owns the thing; the payload is malformed)."""
        dev = self._owner(thing_id)
        if dev is None:
            self._broker_event("unowned_thing", {"thing_id": thing_id, "size": len(payload),
                                                 "payload": payload[:PAYLOAD_KEPT].hex()})
            return None
        try:
            return dev, wire.decode_senml(payload)
        except wire.WireError as exc:
            self._event(dev.device_id, bad_kind, _bad(exc, payload))
            return None

    def _on_values(self, thing_id: str, payload: bytes) -> None:
        got = self._thing_records(thing_id, payload, "bad_values")
        if got is None:
            return
        dev, records = got
        values = wire.group_values(records)
        thing = self._thing(dev)
        now = time.time()
        for name, value in list(values.items()):
            reason = thing.refusal(name, value)
            if reason is None:
                thing.report(name, value, now)
            else:
                del values[name]
                self._count_drop(dev, reason, 1)
        self._event(dev.device_id, "values", values)
        self._publish_state(dev)

    def _on_shadow(self, thing_id: str, payload: bytes) -> None:
        got = self._thing_records(thing_id, payload, "bad_shadow")
        if got is None:
            return
        dev, records = got
        if not wire.is_get_last_values(records):
            self._event(dev.device_id, "shadow", wire.group_values(records))
            return
        self._event(dev.device_id, "last_values", "shadow")
        if dev.answers_events:
            self._publish("/a/t/%s/shadow/i" % thing_id, wire.encode_senml(self._thing(dev).values))

    # -- outgoing -------------------------------------------------------------------------------

    def last_values(self) -> Dict[str, Dict[str, Any]]:
        """A JSON-safe copy of every thing's last values, for saving at stop."""
        with self._cond:
            things = {tid: t.values for tid, t in self.things.items()}
        return json.loads(json.dumps(things))

    def _publish(self, topic: str, payload: Union[bytes, str], qos: int = 1, retain: bool = False,
                 strict: bool = False) -> Optional[mqtt.MQTTMessageInfo]:
        """Publish, unless the payload is over the broker's message_size_limit (which would drop
        it silently): then raise ValueError if ``strict``, else log, record and return None."""
        size = len(payload)
        if size > MESSAGE_SIZE_LIMIT:
            if strict:
                raise ValueError("payload of %d bytes for %s is over the broker's limit of %d bytes"
                                 % (size, topic, MESSAGE_SIZE_LIMIT))
            log.warning("not publishing %d bytes on %s: over the broker's limit of %d bytes",
                        size, topic, MESSAGE_SIZE_LIMIT)
            self._broker_event("too_large", {"topic": topic, "size": size})
            return None
        return self._client.publish(topic, payload, qos=qos, retain=retain)

    def _send(self, dev: Device, sub: str, payload: bytes, strict: bool = False) -> Optional[mqtt.MQTTMessageInfo]:
        return self._publish("/a/d/%s/%s" % (dev.device_id, sub), payload, strict=strict)

    def _publish_device_info(self, dev: Device) -> None:
        if dev.answers_events:
            topic = "/a/d/%s/e/i" % dev.device_id
            payload = wire.device_info(dev.thing_id, dev.tz_offset, dev.tz_dst_until)
            self._publish(topic, payload, qos=1, retain=True)
            if self.retain_publisher is not None:
                self.retain_publisher(topic, payload)

    def state(self, ref: DeviceRef) -> Dict[str, Any]:
        """A JSON-friendly snapshot of a device and its thing's values."""
        with self._cond:
            dev = self.device(ref)
            return {"device_id": dev.device_id, "auth": dev.auth, "variant": dev.variant,
                    "thing_id": dev.thing_id, "connected": dev.connected,
                    "library_version": dev.library_version, "values": dict(self._thing(dev).values),
                    "ota_sha": self.ota_shas.get(dev.device_id)}

    def _publish_state(self, dev: Device) -> None:
        """Mark the device's retained state for publishing (coalesced: at most every STATE_INTERVAL)."""
        with self._cond:
            self._dirty.add(dev.device_id)
        self._state_wakeup.set()

    def _state_worker(self) -> None:
        while not self._stopping.is_set():
            self._state_wakeup.wait()
            self._state_wakeup.clear()
            if self._stopping.wait(STATE_INTERVAL):
                return
            with self._cond:
                dirty, self._dirty = self._dirty, set()
                states = [self.state(d) for d in dirty if d in self.devices]
            for state in states:
                text = json.dumps(state)
                if len(text) > MESSAGE_SIZE_LIMIT:  # the values do not fit: say so instead
                    text = json.dumps(dict(state, values={}, values_omitted=True))
                self._publish(STATE_TOPIC % state["device_id"], text, qos=0, retain=True)

    # -- the dashboard ----------------------------------------------------------------------------

    def set(self, ref: DeviceRef, name: str, value: Any) -> mqtt.MQTTMessageInfo:
        """Write a property from the dashboard: SenML on ``/a/t/<thing>/e/i``; store it."""
        with self._cond:
            dev = self.device(ref)
            if not dev.thing_id:
                raise ValueError("device %s has no thing: nothing to write to" % dev.device_id)
            payload = wire.encode_senml({name: value})
            info = self._publish("/a/t/%s/e/i" % dev.thing_id, payload, strict=True)
            self._thing(dev).write(name, value)
            self._event(dev.device_id, "write", {name: value})
            self._publish_state(dev)
            return info

    def publish_raw(self, ref: DeviceRef, payload: bytes, topic: str = "e/i") -> mqtt.MQTTMessageInfo:
        """Send any bytes to the device's thing (``e/i``, ``shadow/i``) or device (``c/dw``, ``d/e/i``)."""
        with self._cond:
            dev = self.device(ref)
            if topic == "c/dw":
                return self._send(dev, "c/dw", payload, strict=True)
            if topic == "d/e/i":
                return self._send(dev, "e/i", payload, strict=True)
            return self._publish("/a/t/%s/%s" % (dev.thing_id, topic), payload, strict=True)

    def send_command(self, ref: DeviceRef, tag: int, fields: List[Any]) -> mqtt.MQTTMessageInfo:
        """Send any command (tag + array) on the device's ``c/dw``."""
        return self.publish_raw(ref, wire.encode_command(tag, fields), "c/dw")

    def send_timezone(self, ref: DeviceRef, offset: int, until: int) -> None:
        """New timezone: TimezoneCommandDown (command variant) and/or retained e/i (event variant)."""
        with self._cond:
            dev = self.device(ref)
            dev.tz_offset, dev.tz_dst_until = int(offset), int(until)
            if dev.answers_commands:
                self._send(dev, "c/dw", wire.timezone_down(offset, until))
            self._publish_device_info(dev)
            self._event(dev.device_id, "timezone_sent", (int(offset), int(until)))

    def reassign(self, ref: DeviceRef, thing_id: str, before_notify: Optional[Callable[[], None]] = None) -> None:
        """Move the device to ``thing_id`` ("" = detach): ThingUpdate / ThingDetach and/or retained e/i.

        ``before_notify`` runs (outside the lock) after the move and before the device is
        told: LocalCloud lets the broker's ACL follow the device there.
        """
        with self._cond:
            dev = self.device(ref)
            old = dev.thing_id
            dev.thing_id = thing_id
            if thing_id:
                self.things.setdefault(thing_id, ThingState())
        if before_notify is not None:
            before_notify()
        with self._cond:
            if dev.answers_commands:
                if thing_id:
                    self._send(dev, "c/dw", wire.thing_update(thing_id))
                elif old:
                    self._send(dev, "c/dw", wire.thing_detach(old))
            self._publish_device_info(dev)
            self._event(dev.device_id, "reassign" if thing_id else "detach", thing_id or old)
            self._publish_state(dev)

    # -- OTA ------------------------------------------------------------------------------------
    # Events: ota_begin (the SHA-256 hex), ota_progress (see otawire.decode_ota_progress),
    # ota_sent (the command), bad_ota (a malformed OTA message); also ota_http, from the file server.

    def ota_event(self, device_id: str, kind: str, detail: Any) -> None:
        """Record an OTA event and publish it on ``localcloud/ota/<device_id>`` for the CLI."""
        self._event(device_id, kind, detail)
        self._client.publish(OTA_TOPIC % device_id, json.dumps({"kind": kind, "detail": detail}), qos=1)

    def _on_ota(self, dev: Device, tag: int, fields: List[Any], payload: bytes) -> None:
        try:
            if tag == wire.OTA_BEGIN_UP:
                sha = otawire.decode_ota_begin(fields)
                self.ota_shas[dev.device_id] = sha
                self.ota_event(dev.device_id, "ota_begin", sha)
                self._publish_state(dev)
            else:
                self.ota_event(dev.device_id, "ota_progress", otawire.decode_ota_progress(fields))
        except wire.WireError as exc:
            self.ota_event(dev.device_id, "bad_ota", {"error": str(exc), "payload": payload.hex()})

    def send_ota(self, ref: DeviceRef, ota_id: bytes, url: str, initial_sha: bytes,
                 final_sha: bytes) -> mqtt.MQTTMessageInfo:
        """Publish OtaUpdateCmdDown on the device's ``c/dw`` (whatever its attach variant)."""
        payload = otawire.ota_update_down(ota_id, url, initial_sha, final_sha)
        with self._cond:
            dev = self.device(ref)
            info = self._send(dev, "c/dw", payload)
            self.ota_event(dev.device_id, "ota_sent", {"id": ota_id.hex(), "url": url,
                                                       "initial_sha": initial_sha.hex(), "final_sha": final_sha.hex()})
            return info

    # -- reading values ---------------------------------------------------------------------------

    def values(self, ref: DeviceRef) -> Dict[str, Any]:
        """The cloud's last values of the device's thing (copies)."""
        with self._cond:
            return json.loads(json.dumps(self._thing(self.device(ref)).values))

    def history(self, ref: DeviceRef, name: str, timestamps: bool = False) -> List[Any]:
        """Values the device reported for ``name``, oldest first (or ``(time, value)`` pairs)."""
        with self._cond:
            hist = list(self._thing(self.device(ref)).history.get(name, ()))
        return hist if timestamps else [v for _, v in hist]

    def wait_for(self, ref: DeviceRef, name: str, expected: Any, timeout: float = 10.0) -> Any:
        """Wait until the device *reports* ``name`` matching ``expected`` (a value or a predicate).

        Matches the latest reported value, or any report that arrives during the wait
        (so a value that is quickly overwritten is not missed).  Floats match with a
        relative tolerance of 1e-6 (devices send single precision).  Dashboard writes
        are not reports.  Returns the matching value.
        """
        with self._cond:
            dev = self.device(ref)
            start = {tid: t.reports.get(name, 0) for tid, t in self.things.items()}
            result: List[Any] = []

            def check() -> bool:
                thing = self._thing(dev)
                cur = thing.reported.get(name, _MISSING)
                if cur is not _MISSING and values_match(cur, expected):
                    result.append(cur)
                    return True
                new = thing.reports.get(name, 0) - start.get(dev.thing_id, 0)
                hist = thing.history.get(name, ())
                for _, v in list(hist)[len(hist) - min(new, len(hist)):]:
                    if values_match(v, expected):
                        result.append(v)
                        return True
                return False

            if self._cond.wait_for(check, timeout):
                return result[0]
            thing = self._thing(dev)
            seen = list(thing.history.get(name, ()))[-10:]
            raise TimeoutError(
                "device %s (thing %r): property %r did not reach %s within %.1f s; reported %s; "
                "cloud values %s; connected=%s; last events: %s" % (
                    dev.device_id, dev.thing_id, name, _describe(expected), timeout,
                    [v for _, v in seen] or "nothing", _short(thing.values), dev.connected,
                    _short(self.events(dev)[-8:])))

    # -- control requests (CLI) -------------------------------------------------------------------

    def _ctl_worker(self) -> None:
        while True:
            item = self._ctl_queue.get()
            if item is None:
                return
            op, payload = item
            try:
                request = json.loads(payload or b"{}")
            except ValueError:
                log.warning("ignoring control request %s: not JSON", op)
                continue
            reply_to = request.pop("reply_to", None)
            try:
                if self.control_handler is None:
                    raise RuntimeError("no control handler")
                response = {"ok": True, "result": self.control_handler(op, request)}
            except Exception as exc:  # reported back to the CLI, which prints it
                response = {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
            if reply_to:
                text = json.dumps(response)
                if len(text) > MESSAGE_SIZE_LIMIT:
                    text = json.dumps({"ok": False, "error": "the answer (%d bytes) is over the broker's limit of "
                                                            "%d bytes" % (len(text), MESSAGE_SIZE_LIMIT)})
                self._publish(reply_to, text)


def _bad(exc: Exception, payload: bytes) -> Dict[str, Any]:
    """The detail of a bad_* event: the error and the start of the payload (both bounded)."""
    return {"error": _short(str(exc), TEXT_KEPT), "size": len(payload), "payload": payload[:PAYLOAD_KEPT].hex()}


def _describe(expected: Any) -> str:
    return getattr(expected, "__name__", "a predicate") if callable(expected) else repr(expected)


def _short(obj: Any, limit: int = 600) -> str:
    text = obj if isinstance(obj, str) else repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."
