"""A hostile device against its neighbours on the running local cloud (issue 12, item 3).

Each test runs one attack with a real paho client (the attacker logs in with its own,
valid credentials) and checks that the victim device and the cloud are untouched.
"""

import threading

import cbor2
import paho.mqtt.client as mqtt
import pytest

from arduino_iot_cloud.localcloud import wire

pytestmark = pytest.mark.e2e


def senml(values):
    return wire.encode_senml(values)


class Admin:
    """A client on the admin listener (what only the cloud may use): sees what the broker keeps."""

    def __init__(self, cloud):
        creds = cloud.admin_credentials()
        self.cond = threading.Condition()
        self.messages = []  # (topic, payload, retain)
        self.subacks = set()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="isolation-admin", protocol=mqtt.MQTTv311)
        c.username_pw_set(creds["user"], creds["password"])
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.connect(cloud.host, cloud.admin_port, keepalive=10)
        c.loop_start()
        self.client = c

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append((msg.topic, msg.payload, msg.retain))
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, rcs, props=None):
        with self.cond:
            self.subacks.add(mid)
            self.cond.notify_all()

    def retained(self, topic):
        """The retained message the broker holds on ``topic`` (b"" if none)."""
        _, mid = self.client.subscribe(topic, 1)
        with self.cond:
            assert self.cond.wait_for(lambda: mid in self.subacks, 5)
        # the retained message, if any, is sent right after the SUBACK: a round trip
        # through a topic of our own puts it behind us
        _, mid = self.client.subscribe("isolation/echo", 1)
        with self.cond:
            assert self.cond.wait_for(lambda: mid in self.subacks, 5)
        self.client.publish("isolation/echo", b"echo", qos=1)
        with self.cond:
            assert self.cond.wait_for(lambda: any(t == "isolation/echo" for t, _, _ in self.messages), 5)
            found = [p for t, p, r in self.messages if t == topic and r]
            self.messages.clear()
        self.client.unsubscribe(topic)
        return found[-1] if found else b""

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def admin(local_cloud):
    a = Admin(local_cloud)
    yield a
    a.close()


def attached(paho_device, dev):
    """A paho 'device' connected and subscribed to all its own topics."""
    d = paho_device(dev)
    d.connect()
    for topic in ("/a/d/%s/e/i", "/a/d/%s/c/dw"):
        d.subscribe(topic % dev.device_id)
    for topic in ("/a/t/%s/e/i", "/a/t/%s/shadow/i"):
        d.subscribe(topic % dev.thing_id)
    return d


def others(d, dev):
    """Messages the device received on topics that are not its own."""
    own = ("/a/d/%s/" % dev.device_id, "/a/t/%s/" % dev.thing_id)
    return [(t, p) for t, p, _ in d.messages if not t.startswith(own)]


@pytest.mark.parametrize("auth", ["password", "cert"])
def test_wildcard_subscriptions_reveal_no_other_thing(local_cloud, device_factory, paho_device, auth):
    victim, attacker = device_factory(), device_factory(auth=auth)
    v = attached(paho_device, victim)
    a = paho_device(attacker)
    a.connect()
    for topic in ("/a/t/#", "/a/d/#", "#", "/a/t/%s/e/i" % victim.thing_id, "/a/d/%s/c/dw" % victim.device_id):
        a.subscribe(topic)
    # traffic on every kind of the victim's topics: a dashboard write, a value, commands
    local_cloud.set(victim, "sw", True)
    v.publish("/a/t/%s/e/o" % victim.thing_id, senml({"temp": 20.5}))
    local_cloud.wait_for(victim, "temp", 20.5)
    v.command(wire.THING_BEGIN, [""])
    v.expect_command()
    v.publish("/a/t/%s/shadow/o" % victim.thing_id, cbor2.dumps([{0: "r:m", 3: "getLastValues"}]))
    v.expect("/a/t/%s/shadow/i" % victim.thing_id)
    local_cloud.emulator.barrier()
    a.roundtrip()
    assert [m for m in others(a, attacker) if victim.thing_id in m[0] or victim.device_id in m[0]] == []
    assert others(a, attacker) == []  # not one thing id or device id of anyone else
    assert v.expect("/a/t/%s/e/i" % victim.thing_id)  # the victim did get its write


def test_values_on_another_thing_are_not_stored(local_cloud, device_factory, paho_device):
    victim, attacker = device_factory(properties={"temp": 1.0}), device_factory()
    a = paho_device(attacker)
    a.connect()
    mark = local_cloud.mark(victim)
    a.publish("/a/t/%s/e/o" % victim.thing_id, senml({"temp": 99.0, "planted": "x"}))
    a.publish("/a/t/%s/shadow/o" % victim.thing_id, cbor2.dumps([{0: "r:m", 3: "getLastValues"}]))
    a.publish("/a/d/%s/c/up" % victim.device_id, wire.encode_command(wire.DEVICE_BEGIN, ["spoofed"]))
    a.roundtrip()
    local_cloud.emulator.barrier()
    assert local_cloud.values(victim) == {"temp": 1.0}
    assert local_cloud.history(victim, "temp") == []
    assert [k for k, _ in local_cloud.events(victim, since=mark)
            if k in ("values", "last_values", "device_begin")] == []


def test_retained_write_on_another_thing_never_reaches_the_victim(local_cloud, device_factory, paho_device, admin):
    victim, attacker = device_factory(), device_factory()
    topic = "/a/t/%s/e/i" % victim.thing_id
    a = paho_device(attacker)
    a.connect()
    info = a.client.publish(topic, senml({"sw": True}), qos=1, retain=True)
    info.wait_for_publish(5)
    a.roundtrip()
    try:
        assert admin.retained(topic) == b""
        v = attached(paho_device, victim)  # the victim attaches (again) after the attack
        v.roundtrip()
        assert v.taken(topic) == []
    finally:
        admin.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)


@pytest.mark.parametrize("auth", ["password", "cert"])
def test_another_device_id_as_client_id_knocks_nobody_off(local_cloud, device_factory, paho_device, auth):
    victim, attacker = device_factory(auth=auth), device_factory(auth=auth)
    v = attached(paho_device, victim)
    mark = local_cloud.mark(victim)
    a = paho_device(attacker, client_id=victim.device_id)  # own credentials, the victim's client id
    a.connect()
    a.roundtrip()
    # the broker named the attacker's session after its own identity ...
    assert local_cloud.wait_event(attacker, "connect")["username"] == attacker.device_id
    # ... so the victim keeps its connection, and still gets what the cloud sends it
    local_cloud.set(victim, "sw", True)
    assert v.expect("/a/t/%s/e/i" % victim.thing_id)
    v.roundtrip()
    assert v.disconnected is None and v.connects == 1
    assert [e for e in local_cloud.events(victim, since=mark) if e[0] == "disconnect"] == []


@pytest.mark.parametrize("sub", ["e/o", "shadow/o", "c/up"])
def test_retained_publishes_from_a_device_are_refused_and_cleared(local_cloud, device_factory, paho_device,
                                                                  admin, sub):
    dev = device_factory(properties={"x": 1})
    d = paho_device(dev)
    d.connect()
    if sub == "c/up":
        topic, payload = "/a/d/%s/c/up" % dev.device_id, wire.encode_command(wire.DEVICE_BEGIN, ["retained"])
    elif sub == "e/o":
        topic, payload = "/a/t/%s/e/o" % dev.thing_id, senml({"x": 2})
    else:
        topic, payload = "/a/t/%s/shadow/o" % dev.thing_id, cbor2.dumps([{0: "r:m", 3: "getLastValues"}])
    mark = local_cloud.mark(dev)
    d.client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    assert local_cloud.wait_event(dev, "retained_refused", since=mark)["topic"] == topic
    local_cloud.emulator.barrier()
    assert admin.retained(topic) == b""  # cleared: nothing replays at the cloud's next subscribe
    assert local_cloud.values(dev) == {"x": 1}
    assert [k for k, _ in local_cloud.events(dev, since=mark)
            if k in ("values", "last_values", "device_begin")] == []
    assert local_cloud.dropped(dev)["retained"] == 1
    # the same message without the retain flag is served as usual
    d.publish(topic, payload)
    local_cloud.wait_event(dev, {"e/o": "values", "shadow/o": "last_values", "c/up": "device_begin"}[sub],
                           since=mark)


def test_the_broker_follows_a_reassigned_device(local_cloud, device_factory, paho_device):
    dev, neighbour = device_factory(variant="command"), device_factory()
    old = dev.thing_id
    d = attached(paho_device, dev)
    new = local_cloud.reassign(dev)
    assert d.expect_command() == (wire.THING_UPDATE, [new])
    # the new thing's topics open at once (the ACL was reloaded before the device was told)
    d.subscribe("/a/t/%s/e/i" % new)
    d.publish("/a/t/%s/e/o" % new, senml({"n": 1}))
    local_cloud.wait_for(dev, "n", 1)
    local_cloud.set(dev, "w", 5)
    assert senml_names(d.expect("/a/t/%s/e/i" % new)) == {"w"}
    # the old thing is closed: what the device still sends there reaches nobody
    mark = local_cloud.broker_mark()
    d.publish("/a/t/%s/e/o" % old, senml({"n": 2}))
    d.roundtrip()
    local_cloud.emulator.barrier()
    assert [e for e in local_cloud.broker_events(since=mark) if e[1] == "unowned_thing"] == []
    # and a thing handed to the device by name cannot be another device's
    with pytest.raises(ValueError):
        local_cloud.reassign(dev, "/a/t/#")
    local_cloud.reassign(dev, neighbour.thing_id)  # the cloud may share a thing on purpose
    d.expect_command()
    d.publish("/a/t/%s/e/o" % neighbour.thing_id, senml({"shared": 1}))
    local_cloud.wait_for(neighbour, "shared", 1)


def senml_names(payload):
    return {rec[0] for rec in cbor2.loads(payload)}


def test_acl_file_lists_each_device_with_its_own_thing_only(local_cloud, device_factory):
    a, b = device_factory(), device_factory(thing_id="")
    text = local_cloud.broker.acl_devices.read_text()
    assert "pattern" not in text and "#" not in text.replace("# generated", "")
    block = text.split("user %s\n" % a.device_id)[1].split("\nuser ")[0]
    assert sorted(block.split()) == sorted((
        "topic read /a/d/{d}/e/i topic read /a/d/{d}/c/dw topic write /a/d/{d}/c/up "
        "topic read /a/t/{t}/e/i topic read /a/t/{t}/shadow/i topic write /a/t/{t}/e/o "
        "topic write /a/t/{t}/shadow/o").format(d=a.device_id, t=a.thing_id).split())
    block = text.split("user %s\n" % b.device_id)[1].split("\nuser ")[0]
    assert "/a/t/" not in block
    assert (local_cloud.broker.acl_devices.stat().st_mode & 0o077) == 0


def test_moves_from_two_threads_leave_every_device_on_its_current_thing(local_cloud, device_factory, paho_device):
    devs = [device_factory(variant="event"), device_factory(variant="event")]
    errors = []

    def move(dev):
        try:
            for _ in range(15):
                local_cloud.reassign(dev)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=move, args=(dev,)) for dev in devs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    acl = local_cloud.broker.acl_devices.read_text()
    for dev in devs:
        thing = local_cloud.device(dev).thing_id
        assert "topic write /a/t/%s/e/o" % thing in acl
        d = paho_device(dev)
        d.connect()
        d.publish("/a/t/%s/e/o" % thing, senml({"here": 1}))
        local_cloud.wait_for(dev, "here", 1)
