# Sans-I/O device session: attach to the thing, fetch last values, publish
# changes, follow commands from the cloud.
#
# Theory of operation
# -------------------
# The session sits between an MQTT link (anything with subscribe(topic, qos),
# unsubscribe(topic), publish(topic, payload, qos) and can_publish()) and the
# registry.  It never reads the clock or touches a socket: the driver calls
#   on_connected(link, now)      after every CONNACK (first connect or reconnect)
#   on_message(topic, payload, now)
#   poll(now, unix_time)         at the latest by the deadline it returned
#   on_disconnected()
#
# States (one table, below): every connect starts a fresh attach.
#   DETACHED    not connected
#   WAIT_THING  subscribed to the device topics; DeviceBegin and ThingBegin sent;
#               waiting for a thing id (thing_id on /a/d/<dev>/e/i, or ThingUpdate
#               on c/dw).  An empty id means "no thing yet": ThingBegin is sent
#               again with backoff 2 s doubling to 32 s.
#   SYNCING     subscribed to the thing; last values requested (getLastValues on
#               shadow/o for the e/i variant, LastValuesBegin on c/up for the
#               command variant); waiting for them, at most SYNC_TIMEOUT.
#   READY       steady state: changed properties are published on e/o.
# Rule 1: values are published only in READY, so last values are applied first
#         and a property the device changed meanwhile keeps the device's value.
# Rule 2: the same thing id arriving twice (both variants answer) is one attach.
# Rule 3: a thing id is turned into topic names only if it holds no MQTT
#         wildcard, '/', or NUL.

from . import commands, senml
from .compat import const, getLogger
from .errors import DecodeError

log = getLogger("arduino_iot_cloud.session")

DETACHED = const(0)
WAIT_THING = const(1)
SYNCING = const(2)
READY = const(3)

STATE_NAMES = ("detached", "waiting for thing", "syncing", "ready")

_THING_RETRY_MIN_MS = const(2000)
_THING_RETRY_MAX_MS = const(32000)
SYNC_TIMEOUT_MS = const(10000)
# The cloud's answer to a timezone request is asked again after this long.
_TZ_RETRY_MS = const(60000)


def valid_id(thing_id):
    """Rule 3: may this string become part of a topic name?"""
    if not isinstance(thing_id, str) or not thing_id or len(thing_id) > 128:
        return False
    for ch in "+#/\x00":
        if ch in thing_id:
            return False
    return True


class DeviceSession:
    def __init__(self, device_id, registry, client, lib_version):
        self.device_id = device_id
        self.registry = registry
        self.client = client          # passed to user callbacks
        self.lib_version = lib_version
        self.state = DETACHED
        self.thing_id = None
        self.tz_offset = 0
        self.tz_dst_until = 0
        self.link = None
        base = "/a/d/" + device_id
        self.device_in = base + "/e/i"
        self.command_up = base + "/c/up"
        self.command_down = base + "/c/dw"
        self._thing_topics = None     # (e/o, e/i, shadow/o, shadow/i) of the attached thing
        self._retry_at = None         # next ThingBegin while no thing is assigned
        self._retry_ms = _THING_RETRY_MIN_MS
        self._sync_deadline = None
        self._tz_requested_at = None
        self._command_variant = False
        self.attach_count = 0         # completed attaches, for tests and logs
        self.ota = None               # an ota.OTA when over-the-air updates are enabled

    # --- driver entry points ---------------------------------------------------
    def on_connected(self, link, now):
        self.link = link
        self.state = WAIT_THING
        self.thing_id = None
        self._thing_topics = None
        self._retry_ms = _THING_RETRY_MIN_MS
        link.subscribe(self.device_in, 1)
        link.subscribe(self.command_down, 1)
        link.publish(self.command_up, commands.device_begin(self.lib_version), 1)
        self._thing_begin(now)

    def on_disconnected(self):
        self.state = DETACHED
        self.link = None
        self._retry_at = None
        self._sync_deadline = None

    @property
    def ready(self):
        return self.state == READY

    def on_message(self, topic, payload, now):
        try:
            if topic == self.device_in:
                self._on_device_event(payload, now)
            elif topic == self.command_down:
                self._on_command(payload, now)
            elif self._thing_topics is not None and topic == self._thing_topics[1]:
                self.registry.apply(senml.decode(payload), self.client)
            elif self._thing_topics is not None and topic == self._thing_topics[3]:
                self._on_last_values(payload, "shadow", now)
            else:
                log.warning("ignoring message on unexpected topic %s", topic)
        except DecodeError as e:
            # A malformed message costs that message only, never the session.
            log.error("ignoring malformed message on %s: %s", topic, str(e))

    def poll(self, now, unix_time=None):
        """Run timers and publish changes; return the next deadline or None."""
        if self.state == DETACHED:
            return None
        deadline = None
        if self.state == WAIT_THING and self._retry_at is not None:
            if now >= self._retry_at:
                self._thing_begin(now)
            deadline = self._retry_at
        elif self.state == SYNCING:
            if now >= self._sync_deadline:
                log.warning("no last values from the cloud within %d ms; going on without them",
                            SYNC_TIMEOUT_MS)
                self._ready(now)
            else:
                deadline = self._sync_deadline
        if self.state == READY:
            self._refresh_timezone(now, unix_time)
            self.publish_changes()
        return deadline

    def publish_changes(self):
        """Publish every dirty property in one SenML message (Rule 1)."""
        if self.state != READY or not self.link.can_publish():
            return False
        changes = self.registry.changes()
        if not changes:
            return False
        self.link.publish(self._thing_topics[0], senml.encode(changes), 1)
        return True

    # --- attach ------------------------------------------------------------------
    def _thing_begin(self, now):
        self.link.publish(self.command_up, commands.thing_begin(""), 1)
        self._retry_at = now + self._retry_ms
        self._retry_ms = min(self._retry_ms * 2, _THING_RETRY_MAX_MS)

    def _on_device_event(self, payload, now):
        thing_id = None
        for name, _short, value, _t in senml.decode(payload):
            if name == "thing_id":
                thing_id = value
            elif name == "tz_offset" or name == "tz_dst_until":
                if commands.timezone_ok(name, value):
                    setattr(self, name, value)  # the attributes are named as the records
                else:
                    log.warning("ignoring %s: not a 32-bit value the device can hold", name)
        if thing_id is not None:
            self._attach(thing_id, now, command_variant=False)

    def _on_command(self, payload, now):
        tag, fields = commands.decode_down(payload)
        if tag == commands.THING_UPDATE:
            self._attach(fields[0], now, command_variant=True)
        elif tag == commands.THING_DETACH:
            if fields[0] == self.thing_id:
                self._detached_by_cloud(now)
        elif tag == commands.LAST_VALUES_UPDATE:
            self._on_last_values(fields[0], "command", now)
        elif tag == commands.TIMEZONE_DOWN:
            self.tz_offset, self.tz_dst_until = fields
            log.info("timezone offset %d s until %d", self.tz_offset, self.tz_dst_until)
        elif tag == commands.OTA_UPDATE_DOWN:
            self._on_ota_update(fields, now)
        else:
            log.info("ignoring command 0x%06x", tag)

    def _attach(self, thing_id, now, command_variant):
        if thing_id == "":
            if self.thing_id is not None:
                # An empty id for an attached device (thing_id "" on e/i, the
                # older variant's detach; or ThingUpdate("")): as ThingDetach.
                self._detached_by_cloud(now)
                return
            # ThingBegin is already scheduled again (2 s doubling to 32 s).
            log.info("device %s has no thing yet; waiting", self.device_id)
            return
        if not valid_id(thing_id):
            log.error("refusing thing id %r: not usable in a topic name", thing_id)
            return
        if thing_id == self.thing_id and self.state >= SYNCING:
            return  # Rule 2
        if self.thing_id is not None:
            self._detach()
        self.thing_id = thing_id
        base = "/a/t/" + thing_id
        self._thing_topics = (base + "/e/o", base + "/e/i", base + "/shadow/o", base + "/shadow/i")
        self._retry_at = None
        self._command_variant = command_variant
        link = self.link
        link.subscribe(self._thing_topics[1], 1)
        if command_variant:
            link.publish(self.command_up, commands.last_values_begin(), 1)
        else:
            link.subscribe(self._thing_topics[3], 1)
            link.publish(self._thing_topics[2], senml.encode((("r:m", "getLastValues"),)), 1)
        self.state = SYNCING
        self._sync_deadline = now + SYNC_TIMEOUT_MS
        log.info("attached to thing %s; fetching last values", thing_id)

    def _detached_by_cloud(self, now):
        log.info("thing %s detached by the cloud", self.thing_id)
        self._detach()
        self.state = WAIT_THING
        self._retry_at = now + self._retry_ms

    def _detach(self):
        if self._thing_topics is not None and self.link is not None:
            self.link.unsubscribe(self._thing_topics[1])
            if not self._command_variant:
                self.link.unsubscribe(self._thing_topics[3])
        self.thing_id = None
        self._thing_topics = None

    def _on_last_values(self, payload, via, now):
        if self.state != SYNCING:
            log.info("ignoring last values (%s) outside of an attach", via)
            return
        self.registry.apply(senml.decode(payload), self.client, last_values=True)
        self._ready(now)

    def _ready(self, now):
        self.state = READY
        self._sync_deadline = None
        self.attach_count += 1
        if self._command_variant:
            self._request_timezone(now)
        if self.ota is not None:
            self.ota.on_attached(now)  # OtaBeginUp, after every attach
        log.info("device %s ready on thing %s", self.device_id, self.thing_id)

    # --- over-the-air updates (the logic is in ota/) ---------------------------------
    def _on_ota_update(self, fields, now):
        if self.ota is not None:
            self.ota.on_update_command(fields, now)
            return
        log.warning("refusing an OTA update: this client was made without ota=")
        self.link.publish(self.command_up, commands.ota_progress_up(fields[0], commands.OTA_UNAVAILABLE, 0,
                                                                    commands.unix_time_us()), 1)

    # --- timezone ------------------------------------------------------------------
    def _request_timezone(self, now):
        self.link.publish(self.command_up, commands.timezone_up(), 1)
        self._tz_requested_at = now

    def _refresh_timezone(self, now, unix_time):
        # Ask again once the clock passes the end of the current DST period.
        if (self._command_variant and unix_time is not None and self.tz_dst_until
                and unix_time >= self.tz_dst_until):
            if self._tz_requested_at is None or now - self._tz_requested_at >= _TZ_RETRY_MS:
                self._request_timezone(now)
