# A whole DeviceSession fed random, mutated and structured messages on every
# topic it listens to (and some it does not), with both CBOR back ends:
#   - on_message and poll never raise (a malformed message costs that message);
#   - the registry stays consistent: every property keeps values of its type,
#     composite fields keep their declared types, on_write sees those types;
#   - every subscription names a real topic: a thing id holding '+', '#', '/'
#     or NUL never reaches subscribe();
#   - whatever the session publishes can be decoded again.

from hypothesis import given
from hypothesis import strategies as st

import cbor2
import fuzzlib
from arduino_iot_cloud import cbor, commands, compat, senml
from arduino_iot_cloud.records import (
    ColoredLight, Composite, Location, Property, Registry, Schedule, Television,
)
from arduino_iot_cloud.session import DeviceSession, valid_id
from fuzzlib import FUZZ, bounded_call, cbor_values, dumps, mutated, raw_bytes, senml_records

DEV = "d3f0b2c8-0000-4000-8000-00000000f022"
THING = "7a1c2e44-0000-4000-8000-0000000000aa"
OTHER = "8b2d3f55-0000-4000-8000-0000000000bb"
BAD_IDS = ("+", "#", "a/b", "x/#", "thing+", "/", "\x00", "#/+", "a" * 129)


class Link:
    def __init__(self):
        self.subs = []
        self.unsubs = []
        self.pubs = []

    def subscribe(self, topic, qos=1):
        self.subs.append(topic)

    def unsubscribe(self, topic):
        self.unsubs.append(topic)

    def publish(self, topic, payload, qos=1):
        assert isinstance(payload, bytes)
        self.pubs.append((topic, payload))

    def can_publish(self):
        return True


PLAIN = (("b", False), ("i", 0), ("f", 0.0), ("s", "x"), ("raw", b"\x00"), ("u", None))
COMPOSITES = (("loc", Location), ("light", ColoredLight), ("tv", Television), ("sch", Schedule))


def _registry():
    seen = []
    reg = Registry()

    def on_write(client, value):
        seen.append(value)

    for name, value in PLAIN:
        reg.add(Property(name, value=value, on_write=on_write))
    for name, cls in COMPOSITES:
        reg.add(cls(name, on_write=on_write))
    return reg, seen


NAMES = tuple(n for n, _ in PLAIN) + tuple(
    "%s:%s" % (name, f) for name, cls in COMPOSITES for f, _k in cls.FIELDS
) + ("thing_id", "tz_offset", "tz_dst_until", "r:m", "nope", "loc", "i:x")

thing_ids = st.one_of(st.sampled_from((THING, OTHER, "") + BAD_IDS), st.text(max_size=12))
# Writes that name real properties, with values of every type and edge numbers.
_write = st.builds(
    lambda name, lv: {0: name, lv[0]: lv[1]},
    st.sampled_from(NAMES),
    st.one_of(st.tuples(st.just(2), st.one_of(st.sampled_from(fuzzlib.EDGE_INTS + fuzzlib.EDGE_FLOATS),
                                               fuzzlib.ints, fuzzlib.floats)),
              st.tuples(st.just(4), st.one_of(st.booleans(), st.integers(-1, 2))),
              st.tuples(st.just(3), fuzzlib.texts),
              st.tuples(st.just(8), st.binary(max_size=6))))
typed_writes = st.lists(_write, min_size=1, max_size=6).map(dumps)
values_pack = st.one_of(typed_writes, typed_writes, senml_records(NAMES).map(dumps))
device_events = st.lists(
    st.one_of(st.tuples(st.just("thing_id"), thing_ids),
              st.tuples(st.sampled_from(("tz_offset", "tz_dst_until")), fuzzlib.scalars)),
    min_size=1, max_size=3).map(lambda pairs: dumps([{0: n, 3 if isinstance(v, str) else 2: v} for n, v in pairs]))
command_msgs = st.one_of(
    st.builds(lambda t, i: dumps(cbor2.CBORTag(t, [i])),
              st.sampled_from((commands.THING_UPDATE, commands.THING_DETACH)), thing_ids),
    st.builds(lambda p: dumps(cbor2.CBORTag(commands.LAST_VALUES_UPDATE, [p])), values_pack),
    st.builds(lambda a, b: dumps(cbor2.CBORTag(commands.TIMEZONE_DOWN, [a, b])), fuzzlib.ints, fuzzlib.ints),
    st.builds(lambda t, v: dumps(cbor2.CBORTag(t, v)), fuzzlib.tag_numbers, cbor_values()),
)
CORPUS = [
    senml.encode((("thing_id", THING), ("tz_offset", 3600))),
    senml.encode((("i", 5), ("f", 2.5), ("b", True), ("s", "hey"), ("loc:lat", 1.0), ("loc:lon", 2.0))),
    dumps(cbor2.CBORTag(commands.THING_UPDATE, [OTHER])),
    dumps(cbor2.CBORTag(commands.LAST_VALUES_UPDATE, [senml.encode((("i", 1),))])),
]
payloads = st.one_of(values_pack, values_pack, device_events, command_msgs, raw_bytes(60), mutated(CORPUS))
# Topics by role; the thing's topics are resolved when the message is fed.
ROLES = ("device_in", "command_down", "thing_in", "shadow_in", "other")
messages = st.lists(st.one_of(st.tuples(st.sampled_from(ROLES), payloads),
                             st.tuples(st.sampled_from(("thing_in", "shadow_in")), typed_writes)),
                   min_size=1, max_size=8)


def _topic(session, role, rng_thing):
    if role == "device_in":
        return session.device_in
    if role == "command_down":
        return session.command_down
    tid = session.thing_id or rng_thing
    if role == "thing_in":
        return "/a/t/%s/e/i" % tid
    if role == "shadow_in":
        return "/a/t/%s/shadow/i" % tid
    return "/a/t/%s/e/o" % tid


def _check_registry(reg, seen):
    for name, value in PLAIN:
        rec = reg.get(name)
        if value is not None:
            # Typed by its initial value: the type never changes and the value always has it.
            assert rec.kind is type(value), (name, rec.kind)
            assert rec.value is None or type(rec.value) is rec.kind, (name, rec.value, rec.kind)
        else:
            # Untyped (value=None, no type=): any plain value, never a type fixed by one record.
            assert rec.kind is None, (name, rec.kind)
            assert rec.value is None or type(rec.value) in (bool, int, float, str, bytes), (name, rec.value)
    for name, cls in COMPOSITES:
        rec = reg.get(name)
        for field, kind in cls.FIELDS:
            v = getattr(rec, field)
            assert v is None or type(v) is kind, (name, field, v)
    for v in seen:
        assert isinstance(v, Composite) or type(v) in (bool, int, float, str, bytes), v
    del seen[:]


def _check_topics(session, link):
    allowed_device = (session.device_in, session.command_down)
    for topic in link.subs + link.unsubs:
        if topic in allowed_device:
            continue
        parts = topic.split("/")
        assert len(parts) == 6 and parts[:3] == ["", "a", "t"], topic
        assert parts[4:] in (["e", "i"], ["shadow", "i"]), topic
        assert valid_id(parts[3]), topic
        assert "+" not in topic and "#" not in topic and "\x00" not in topic
    assert session.thing_id is None or valid_id(session.thing_id)
    for topic, payload in link.pubs:
        assert "+" not in topic and "#" not in topic
        if topic.endswith("/e/o"):
            for name, _s, value, _t in senml.decode(payload):
                assert name in NAMES and value is not None


def _run(msgs, start_ready, backend):
    reg, seen = _registry()
    session = DeviceSession(DEV, reg, "client", "fuzz")
    link = Link()
    session.on_connected(link, 0)
    if start_ready:
        session.on_message(session.device_in, CORPUS[0], 1)
        session.on_message("/a/t/%s/shadow/i" % THING, CORPUS[1], 2)
        assert session.ready
    now = 10
    for role, payload in msgs:
        now += 700
        topic = _topic(session, role, THING)
        _, err = bounded_call(session.on_message, (), topic, payload, now)
        assert err is None
        bounded_call(session.poll, (), now, 1700000000 + now // 1000)
        assert isinstance(session.tz_offset, int) and isinstance(session.tz_dst_until, int)
        _check_registry(reg, seen)
        _check_topics(session, link)
    # The device can still change and publish every plain property.
    for name, value in PLAIN:
        if value is not None:
            reg.get(name).set(value)
    session.poll(now + 1, None)
    _check_topics(session, link)


def _with_backend(backend, fn, *args):
    saved = compat.cbor_loads, compat.cbor_dumps
    if backend == "own":
        compat.cbor_loads, compat.cbor_dumps = cbor.loads, cbor.dumps
    try:
        return fn(*args)
    finally:
        compat.cbor_loads, compat.cbor_dumps = saved


@FUZZ
@given(messages, st.booleans(), st.sampled_from(("cbor2", "own")))
def test_session_on_message(msgs, start_ready, backend):
    _with_backend(backend, _run, msgs, start_ready, backend)


def test_wildcard_thing_ids_never_subscribed():
    for bad in BAD_IDS:
        for payload in (senml.encode((("thing_id", bad),)),
                        dumps(cbor2.CBORTag(commands.THING_UPDATE, [bad]))):
            for backend in ("cbor2", "own"):
                reg, _ = _registry()
                s = DeviceSession(DEV, reg, "client", "fuzz")
                link = Link()
                s.on_connected(link, 0)
                topic = s.device_in if payload[:1] != b"\xda" else s.command_down
                _with_backend(backend, s.on_message, topic, payload, 1)
                assert s.thing_id is None, (bad, backend)
                assert link.subs == [s.device_in, s.command_down], link.subs


# The registry alone, with decoded records of every type for every name: a
# value of the wrong type or out of range for a property is skipped (logged),
# never raised and never stored.
edge_values = st.one_of(st.sampled_from(fuzzlib.EDGE_INTS + fuzzlib.EDGE_FLOATS), fuzzlib.scalars)
decoded = st.lists(st.tuples(st.sampled_from(NAMES), st.none(), edge_values, st.none()), min_size=1, max_size=6)


@fuzzlib.fewer(5)
@given(decoded, st.booleans())
def test_registry_apply(records, last_values):
    reg, seen = _registry()
    _, err = bounded_call(reg.apply, (), records, "client", last_values)
    assert err is None
    _check_registry(reg, seen)
    # Still publishable.
    senml.encode(reg.changes())
