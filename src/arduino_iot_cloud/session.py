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
#               again with backoff 2 s doubling to 32 s.  Without a thing id
#               SILENCE_WARN_MS after the connect, a warning names the likely
#               cause (Rule 6).
#   SYNCING     subscribed to the thing; last values requested (getLastValues on
#               shadow/o for the e/i variant, LastValuesBegin on c/up for the
#               command variant); waiting for them, at most SYNC_TIMEOUT.
#   READY       steady state: changed properties are published on e/o.
# Rule 1: values are published only in READY, so last values are applied first
#         and a property the device changed meanwhile keeps the device's value.
# Rule 2: the same thing id arriving twice (both variants answer) is one attach.
# Rule 3: a thing id is turned into topic names only if it holds no MQTT
#         wildcard, '/', or NUL.
# Rule 4: every QoS 1 publish waits for room in the link's in-flight window
#         (can_publish()).  The session's own requests (DeviceBegin, ThingBegin,
#         getLastValues, LastValuesBegin, the timezone request) wait in a small
#         outbox meanwhile; a reconnect or a new thing makes the waiting ones
#         stale, and resend_after_reconnect() tells the link to drop their
#         unacknowledged copies too: only property values are sent again.
# Rule 5: while DETACHED (no link) incoming messages are ignored, with a log.
# Rule 6: a login the broker accepts proves the username and password, not the
#         device id: with a wrong device id the device topics stay silent.  So
#         a connect that brings no thing id within SILENCE_WARN_MS logs one
#         warning naming the likely cause, and the attach goes on waiting.
#
# Events for the user's connection callbacks (client.py runs them, after the
# step): ("on_connect",) after a CONNACK, ("on_attach",) on reaching READY,
# ("on_disconnect", error) when a link that had logged in is gone (error None
# for a requested disconnect).  They wait in `events`.
# Repeated warnings caused by the peer (messages on unexpected topics,
# malformed messages) are logged once, then as a count at most every
# _REPEAT_LOG_MS: a flood must not become a flood of log lines.

from . import commands, senml
from .compat import const, getLogger
from .errors import DecodeError
from .retry import THING_RETRY_CAP_MS, THING_RETRY_FIRST_MS, Backoff

log = getLogger("arduino_iot_cloud.session")

DETACHED = const(0)
WAIT_THING = const(1)
SYNCING = const(2)
READY = const(3)

STATE_NAMES = ("detached", "waiting for thing", "syncing", "ready")

SYNC_TIMEOUT_MS = const(10000)
SILENCE_WARN_MS = const(10000)
# The cloud's answer to a timezone request is asked again after this long.
_TZ_RETRY_MS = const(60000)
# At most this many of the session's own requests wait for room (Rule 4);
# there are five kinds, and duplicates are not queued.
_OUTBOX_MAX = const(8)
_REPEAT_LOG_MS = const(10000)


class _Throttled:
    """A log call for a repeated event: the first one is logged, then at most
    one line per period, carrying the count of those held back."""

    def __init__(self, fn, period_ms=_REPEAT_LOG_MS):
        self._fn = fn
        self._period = period_ms
        self._next = None
        self._held = 0

    def __call__(self, now, msg, *args):
        if self._next is not None and now < self._next:
            self._held += 1
            return
        if self._held:
            self._fn(msg + " (and %d more like it in the last %d s)",
                     *(args + (self._held, (now - self._next + self._period) // 1000)))
        else:
            self._fn(msg, *args)
        self._held = 0
        self._next = now + self._period


def valid_id(thing_id):
    """Rule 3: may this string become part of a topic name?"""
    return thing_id != "" and commands.thing_id_problem(thing_id) is None


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
        self._thing_retry = Backoff(THING_RETRY_FIRST_MS, THING_RETRY_CAP_MS, rand=None)
        self._sync_deadline = None
        self._tz_requested_at = None
        self._command_variant = False
        self._outbox = []             # (topic, payload): own requests waiting for room (Rule 4)
        self.attach_count = 0         # completed attaches, for tests and logs
        self.events = []              # for the user's connection callbacks (see above)
        self._warn_at = None          # Rule 6: when to warn if no thing id came
        self._heard = False           # anything on the device topics since the connect
        self.ota = None               # an ota.OTA when over-the-air updates are enabled
        self._warn_topic = _Throttled(log.warning)
        self._warn_malformed = _Throttled(log.error)
        self._warn_detached = _Throttled(log.warning)

    # --- driver entry points ---------------------------------------------------
    def on_connected(self, link, now):
        self.link = link
        self.state = WAIT_THING
        self.thing_id = None
        self._thing_topics = None
        self._thing_retry.reset()
        self._outbox = []  # stale: a fresh attach starts here
        self._warn_at = now + SILENCE_WARN_MS
        self._heard = False
        self.events.append(("on_connect",))
        link.subscribe(self.device_in, 1)
        link.subscribe(self.command_down, 1)
        self._request(self.command_up, commands.device_begin(self.lib_version))
        self._thing_begin(now)

    def on_disconnected(self, error=None):
        """The link is gone (error: why; None when the device closed it)."""
        if self.link is not None:
            self.events.append(("on_disconnect", error))
        self.state = DETACHED
        self.link = None
        self._retry_at = None
        self._sync_deadline = None
        self._warn_at = None
        self._outbox = []

    def resend_after_reconnect(self, topic):
        """Rule 4: should an unacknowledged publish on topic go out again after
        a reconnect?  Only property values do; requests are made afresh."""
        return topic.startswith("/a/t/") and topic.endswith("/e/o")

    @property
    def ready(self):
        return self.state == READY

    def on_message(self, topic, payload, now):
        if self.link is None:  # Rule 5: e.g. a PUBLISH before the CONNACK
            self._warn_detached(now, "ignoring message on %s: not connected", topic)
            return
        try:
            if topic == self.device_in or topic == self.command_down:
                self._heard = True
            if topic == self.device_in:
                self._on_device_event(payload, now)
            elif topic == self.command_down:
                self._on_command(payload, now)
            elif self._thing_topics is not None and topic == self._thing_topics[1]:
                self.registry.apply(senml.decode(payload), self.client)
            elif self._thing_topics is not None and topic == self._thing_topics[3]:
                self._on_last_values(payload, "shadow", now)
            else:
                self._warn_topic(now, "ignoring message on unexpected topic %s", topic)
        except DecodeError as e:
            # A malformed message costs that message only, never the session.
            self._warn_malformed(now, "ignoring malformed message on %s: %s", topic, str(e))

    def poll(self, now, unix_time=None):
        """Run timers and publish changes; return the next deadline or None."""
        if self.state == DETACHED:
            return None
        self._flush_outbox()
        deadline = None
        if self.state == WAIT_THING and self._retry_at is not None:
            if now >= self._retry_at:
                self._thing_begin(now)
            deadline = self._retry_at
            if self._warn_at is not None:
                if now >= self._warn_at:
                    self._warn_no_thing()
                elif self._warn_at < deadline:
                    deadline = self._warn_at
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
        if self.state != READY or self._outbox or not self.link.can_publish():
            return False
        changes = self.registry.changes()
        if not changes:
            return False
        self.link.publish(self._thing_topics[0], senml.encode(changes), 1)
        return True

    # --- the session's own requests (Rule 4) --------------------------------------
    def _request(self, topic, payload):
        if not self._outbox and self.link.can_publish():
            self.link.publish(topic, payload, 1)
            return
        item = (topic, payload)
        if item not in self._outbox and len(self._outbox) < _OUTBOX_MAX:
            self._outbox.append(item)

    def _flush_outbox(self):
        outbox = self._outbox
        while outbox and self.link.can_publish():
            topic, payload = outbox.pop(0)
            self.link.publish(topic, payload, 1)

    # --- attach ------------------------------------------------------------------
    def _warn_no_thing(self):
        # Rule 6: once per connection.
        self._warn_at = None
        if self._heard:
            cause = "the cloud answers that the device has no thing: attach it to a thing in the cloud"
        else:
            cause = ("no answer on the device's topics: the device id may not match the username and "
                     "secret key (or certificate), or the device has no thing in the cloud")
        log.warning("device %s: no thing id %d s after logging in; %s; still waiting",
                    self.device_id, SILENCE_WARN_MS // 1000, cause)

    def _thing_begin(self, now):
        self._request(self.command_up, commands.thing_begin(""))
        self._retry_at = now + self._thing_retry.delay_after_failure(now)

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
        self._warn_at = None
        base = "/a/t/" + thing_id
        self._thing_topics = (base + "/e/o", base + "/e/i", base + "/shadow/o", base + "/shadow/i")
        self._retry_at = None
        self._command_variant = command_variant
        # Requests for an earlier thing are stale.
        self._outbox = [item for item in self._outbox if not item[0].startswith("/a/t/")]
        link = self.link
        link.subscribe(self._thing_topics[1], 1)
        if command_variant:
            self._request(self.command_up, commands.last_values_begin())
        else:
            link.subscribe(self._thing_topics[3], 1)
            self._request(self._thing_topics[2], senml.encode((("r:m", "getLastValues"),)))
        self.state = SYNCING
        self._sync_deadline = now + SYNC_TIMEOUT_MS
        log.info("attached to thing %s; fetching last values", thing_id)

    def _detached_by_cloud(self, now):
        log.info("thing %s detached by the cloud", self.thing_id)
        self._detach()
        self.state = WAIT_THING
        self._retry_at = now + self._thing_retry.ceiling()

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
        self.events.append(("on_attach",))
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
        self._request(self.command_up, commands.timezone_up())
        self._tz_requested_at = now

    def _refresh_timezone(self, now, unix_time):
        # Ask again once the clock passes the end of the current DST period.
        if (self._command_variant and unix_time is not None and self.tz_dst_until
                and unix_time >= self.tz_dst_until):
            if self._tz_requested_at is None or now - self._tz_requested_at >= _TZ_RETRY_MS:
                self._request_timezone(now)
