"""The paho transport against a hostile broker (a real TLS server from the local
CA, tests/faults/paho_rogue.py), in sync mode (update() calls) and async mode
(run() as a task):

- a PUBLISH on the device topic before the CONNACK is a protocol error: the
  link is dropped, the client reconnects with backoff, nothing escapes
  update() or run(), and the session never attaches to what it sent;
- a PUBLISH of 32 MB is dropped as its bytes come, never shown to paho (the
  client's traced memory stays small), and the message after it arrives on
  the same link;
- a broker that floods QoS 1 messages and never reads: the PUBACKs waiting in
  paho's write queue are bounded, then the link is dropped;
- a QoS 2 PUBLISH, a packet type or flags a broker must not send: refused;
- a TLS handshake slower than keepalive: the client still logs in and
  subscribes on that connection (paho's keepalive cut it before its CONNACK,
  at every attempt: issue 12 item 8);
- an exception while paho hands over a message costs that packet only (paho
  does not hand it over again at every read);
- a SUBACK with the failure code 0x80: SubscribeRefused, logged, reconnect
  with backoff (paho passed it on silently);
- bytes of a packet that never ends, dripped after the CONNACK, with no
  PINGRESP: the link is given up 1.5 x keepalive after the last complete
  packet (paho took every byte as life);
- a flood of tiny PUBLISHes: one step handles at most 64 packets.

Each test failed before the paho transport checked these.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import tracemalloc

import pytest

from paho_rogue import CONNACK_OK, RogueBroker, publish, read_packet

pytest.importorskip("paho.mqtt")

from arduino_iot_cloud import ArduinoCloudClient  # noqa: E402
from arduino_iot_cloud.errors import DecodeError, SubscribeRefused  # noqa: E402

pytestmark = pytest.mark.e2e

DEVICE = "rogue-device"
DEVICE_IN = "/a/d/%s/e/i" % DEVICE
THING_PAYLOAD = b"\x81\xa2\x00hthing_id\x03krogue-thing"  # SenML [{n: "thing_id", vs: "rogue-thing"}]
HUGE = 32 * 1024 * 1024


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@pytest.fixture
def rogue(local_cloud, clean_env):
    made = []

    def make(script, **kw):
        broker = RogueBroker(local_cloud, script, **kw)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.stop()


def make_client(cloud, broker, mode, keepalive=10):
    client = ArduinoCloudClient(DEVICE, password="not-a-real-secret", server="127.0.0.1", port=broker.port,
                                keepalive=keepalive, sync_mode=(mode == "sync"), ssl_params={"cafile": cloud.ca_file},
                                reconnect_cap=0.3, transport="paho")
    client.register("level", value=0)
    return client


def drive(client, mode, done, timeout):
    """Run the client until done() or timeout; any exception out of update()
    or run() fails the test.  Returns True if done() became true."""
    deadline = time.monotonic() + timeout
    if mode == "sync":
        try:
            while time.monotonic() < deadline:
                client.update()
                if done():
                    return True
                time.sleep(0.001)
            return False
        finally:
            client.stop()

    async def main():
        task = asyncio.create_task(client.run())
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(0.01)
                assert not task.done(), "run() ended: %r" % (task.exception(),)
                if done():
                    return True
            return False
        finally:
            client.stop()
            await asyncio.wait_for(task, 5)

    return asyncio.run(main())


@pytest.mark.parametrize("mode", ("sync", "async"))
def test_publish_before_connack_is_a_protocol_error(local_cloud, rogue, mode, caplog):
    # The broker sends the thing id first, then the CONNACK, on every connection.
    def script(broker, conn, number):
        broker.send(conn, number, publish(DEVICE_IN, THING_PAYLOAD) + CONNACK_OK)
        broker.wait_for_close(conn, number)

    broker = rogue(script)
    client = make_client(local_cloud, broker, mode)
    caplog.set_level(logging.WARNING, "arduino_iot_cloud")
    drive(client, mode, lambda: len(broker.accepted) >= 3 and client.engine.backoff.failures >= 3, 15)
    # Reconnected, backed off each time, never attached to the thing it was sent.
    assert len(broker.accepted) >= 3, broker.accepted
    assert client.engine.backoff.failures >= 3
    assert isinstance(client.engine.last_error, DecodeError)
    assert "PUBLISH before CONNACK" in str(client.engine.last_error)
    assert "PUBLISH before CONNACK" in caplog.text
    assert client.session.thing_id is None and client.session.attach_count == 0
    assert client.engine.conn is None
    # The client closed each of those connections itself.
    assert set(broker.closed_by_client) >= set(range(1, len(broker.accepted)))
    assert not broker.errors, broker.errors


@pytest.mark.parametrize("mode", ("sync", "async"))
def test_an_oversized_publish_is_dropped_as_it_comes_and_the_link_stays(local_cloud, rogue, mode, caplog):
    # CONNACK, then a PUBLISH of HUGE bytes sent in 64 KiB pieces, then a small
    # one.  paho never sees the big one (it buffered all of it, then the
    # guard refused it from its header and the link was dropped): the socket
    # drops its bytes as they come, and the next message arrives on the same link.
    topic = "/a/t/not-mine/e/i"
    head = b"\x30" + varint(HUGE) + len(topic).to_bytes(2, "big") + topic.encode()

    def script(broker, conn, number):
        broker.send(conn, number, CONNACK_OK)
        time.sleep(0.2)  # the client is logged in and has subscribed
        broker.send(conn, number, head)
        chunk = b"\x00" * 65536
        left = HUGE - (len(head) - 1 - len(varint(HUGE)))
        while left > 0 and not broker.stopping.is_set():
            broker.send(conn, number, chunk[:left])
            left -= len(chunk)
        broker.send(conn, number, publish(topic, b"\x80"))
        broker.wait_for_close(conn, number)

    broker = rogue(script)
    client = make_client(local_cloud, broker, mode)
    messages = []
    original_on_message = client.session.on_message

    def recording_on_message(topic, payload, now):
        messages.append((topic, payload))
        original_on_message(topic, payload, now)

    client.session.on_message = recording_on_message
    caplog.set_level(logging.WARNING, "arduino_iot_cloud")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        arrived = drive(client, mode, lambda: messages, 60)
        connections = len(broker.accepted)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print("oversized PUBLISH: the rogue broker sent %d bytes; client traced peak %d bytes" % (broker.sent[1], peak))
    assert arrived, caplog.text
    assert messages == [(topic, b"\x80")], messages
    assert "skipped a message of %d bytes on %s: larger than the maximum of 131072" % (HUGE, topic) in caplog.text
    assert connections == 1, "the link was dropped: %d connections" % connections
    assert broker.sent[1] > HUGE, broker.sent  # it all went through the client...
    assert peak < 8 * 1024 * 1024, peak  # ...and its memory stayed small
    assert not broker.errors, broker.errors


def small_send_buffer(client):
    """A small send buffer on the client's socket, so that its writes stall
    soon once the broker stops reading (on loopback the kernel would otherwise
    take ~200,000 PUBACKs first).  Always True: for use inside drive()'s predicate."""
    conn = client.engine.conn
    if conn is not None and not getattr(conn, "small_buffer", False):
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        conn.small_buffer = True
    return True


@pytest.mark.parametrize("mode", ("sync", "async"))
def test_write_queue_is_bounded_when_the_broker_does_not_read(local_cloud, rogue, mode, caplog):
    # CONNACK, then QoS 1 messages (each asks for a PUBACK) without ever reading
    # again: the PUBACKs pile up on the client's side.
    flood = 300000

    def script(broker, conn, number):
        if number == 1:
            broker.send(conn, number, CONNACK_OK)
            batch = []
            for i in range(flood):
                batch.append(publish(DEVICE_IN, b"\x80", qos=1, pid=i % 65535 + 1))
                if len(batch) == 1000:
                    broker.send(conn, number, b"".join(batch))
                    batch = []
                if broker.stopping.is_set():
                    return
            broker.send(conn, number, b"".join(batch))
        broker.wait_for_close(conn, number, timeout=60)

    broker = rogue(script, rcvbuf=4096)
    client = make_client(local_cloud, broker, mode)
    caplog.set_level(logging.WARNING, "arduino_iot_cloud")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        dropped = drive(client, mode, lambda: small_send_buffer(client) and "the broker is not reading" in caplog.text,
                        60)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print("QoS 1 flood: the rogue broker sent %d bytes; client traced peak %d bytes" % (broker.sent[1], peak))
    assert dropped, caplog.text
    assert "over 1024 MQTT packets wait to be sent" in caplog.text
    assert client.engine.conn is None
    # Without the bound paho queued one PUBACK per message: tens of MB.
    assert peak < 8 * 1024 * 1024, peak


@pytest.mark.parametrize("mode", ("sync", "async"))
@pytest.mark.parametrize("packet, reason", (
    (publish(DEVICE_IN, THING_PAYLOAD, qos=2, pid=7), "PUBLISH with QoS 2"),
    (b"\x62\x02\x00\x07", "unexpected MQTT packet type 0x62"),  # PUBREL: no QoS 2 flow was started
    (b"\xd1\x00", "MQTT packet 0xd1 has reserved flags set"),   # PINGRESP with a flag
), ids=("qos2", "pubrel", "flags"))
def test_packets_a_broker_must_not_send_are_refused(local_cloud, rogue, mode, packet, reason, caplog):
    # paho would keep a QoS 2 message until a PUBREL that never comes (and
    # never deliver it), answer a stray PUBREL, and ignore the flags.
    def script(broker, conn, number):
        if number == 1:
            broker.send(conn, number, CONNACK_OK)
            time.sleep(0.2)
            broker.send(conn, number, packet)
        broker.wait_for_close(conn, number)

    broker = rogue(script)
    client = make_client(local_cloud, broker, mode)
    caplog.set_level(logging.WARNING, "arduino_iot_cloud")
    assert drive(client, mode, lambda: reason in caplog.text, 10), caplog.text
    deadline = time.monotonic() + 5
    while 1 not in broker.closed_by_client and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 1 in broker.closed_by_client
    assert client.session.thing_id is None


def test_an_error_in_the_session_costs_one_packet(local_cloud, rogue):
    # An exception raised while paho hands over a message leaves update() once
    # (as on the socket transport); paho has finished that packet, so the next
    # update() goes on with the next one instead of handing the same one again.
    def script(broker, conn, number):
        broker.send(conn, number, CONNACK_OK)
        time.sleep(0.2)
        broker.send(conn, number, publish(DEVICE_IN, b"\x80") + publish(DEVICE_IN, THING_PAYLOAD))
        broker.wait_for_close(conn, number)

    broker = rogue(script)
    client = make_client(local_cloud, broker, "sync")
    session = client.session
    handled = []
    original = session.on_message

    def fails_once(topic, payload, now):
        handled.append(payload)
        if len(handled) == 1:
            raise RuntimeError("a bug in the session")
        original(topic, payload, now)

    session.on_message = fails_once
    raised = []
    deadline = time.monotonic() + 10
    try:
        while session.thing_id is None and time.monotonic() < deadline:
            try:
                client.update()
            except RuntimeError as e:
                raised.append(str(e))
            time.sleep(0.001)
    finally:
        client.stop()
    assert raised == ["a bug in the session"]
    assert handled == [b"\x80", THING_PAYLOAD]  # the failed packet was not handed over again
    assert session.thing_id == "rogue-thing"
    assert len(broker.accepted) == 1  # the link survived


@pytest.mark.parametrize("mode", ("sync", "async"))
def test_a_handshake_slower_than_keepalive_still_logs_in_and_subscribes(local_cloud, rogue, mode, caplog):
    # paho stamps its keepalive clocks when connect() starts, before the TLS
    # handshake; its loop_misc() closed any new connection whose handshake took
    # longer than keepalive before the CONNACK was read.  On a slow link every
    # attempt was cut that way: the broker saw the device connect again and
    # again and never subscribe (issue 12, item 8).
    subscribed = []

    def script(broker, conn, number):
        time.sleep(0.1)  # the CONNACK comes a little after the CONNECT
        broker.send(conn, number, CONNACK_OK)
        conn.settimeout(5)
        while True:
            packet = read_packet(conn)
            if packet is None:
                return
            if packet[0] == 0x82:  # SUBSCRIBE
                subscribed.append(number)

    broker = rogue(script, handshake_delay=2.5)
    client = make_client(local_cloud, broker, mode, keepalive=2)
    caplog.set_level(logging.INFO, "arduino_iot_cloud")
    done = drive(client, mode, lambda: bool(subscribed), 12)
    assert done, "no SUBSCRIBE in %d connection(s): %s" % (len(broker.accepted), caplog.text)
    assert subscribed[0] == 1 and len(broker.accepted) == 1


def subscribe_topic(packet: bytes) -> str:
    """The first topic filter of a SUBSCRIBE packet (fixed header included)."""
    i = 1
    while packet[i] & 0x80:
        i += 1
    i += 3  # last length byte, packet id
    size = (packet[i] << 8) | packet[i + 1]
    return packet[i + 2:i + 2 + size].decode()


@pytest.mark.parametrize("mode", ("sync", "async"))
def test_a_refused_subscription_is_an_error_of_the_attach(local_cloud, rogue, mode, caplog):
    # The broker answers every SUBSCRIBE with the failure code 0x80.  paho
    # ignored it: nothing logged, no last_error, the device waited forever.
    # As on the socket transport: logged, SubscribeRefused, reconnect with backoff.
    def script(broker, conn, number):
        broker.send(conn, number, CONNACK_OK)
        conn.settimeout(5)
        while True:
            packet = read_packet(conn)
            if packet is None:
                broker.closed_by_client.append(number)
                return
            if packet[0] == 0x82:
                broker.send(conn, number, b"\x90\x03" + packet[2:4] + b"\x80")

    broker = rogue(script)
    client = make_client(local_cloud, broker, mode)
    caplog.set_level(logging.WARNING, "arduino_iot_cloud")
    assert drive(client, mode, lambda: len(broker.accepted) >= 3 and client.engine.backoff.failures >= 3, 15), \
        caplog.text
    error = client.engine.last_error
    assert isinstance(error, SubscribeRefused), error
    assert error.topic == DEVICE_IN
    assert "the broker refused the subscription to %s (SUBACK 0x80)" % DEVICE_IN in caplog.text
    assert "not-a-real-secret" not in caplog.text
    deadline = time.monotonic() + 5
    while not set(broker.closed_by_client) >= {1, 2} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(broker.closed_by_client) >= {1, 2}, broker.closed_by_client


@pytest.mark.parametrize("mode", ("sync", "async"))
def test_bytes_dripped_after_connack_do_not_keep_the_link(local_cloud, rogue, mode, caplog):
    # CONNACK, then one byte a second of a PUBLISH that never ends, and no
    # PINGRESP.  paho counts every body byte as life: the link stayed up.
    # Only complete packets count: given up within about 2 x keepalive.
    keepalive = 2
    gone = {}

    def script(broker, conn, number):
        if number > 1:
            broker.wait_for_close(conn, number)
            return
        broker.send(conn, number, CONNACK_OK)
        gone["connack_at"] = time.monotonic()
        drip = iter(b"\x30\xff\x7f" + b"x" * 100)
        conn.settimeout(0.05)
        try:
            while time.monotonic() - gone["connack_at"] < 20 and not broker.stopping.is_set():
                broker.send(conn, number, bytes((next(drip),)))
                next_byte = time.monotonic() + 1.0
                while time.monotonic() < next_byte:  # read (and never answer) SUBSCRIBEs, PINGREQs
                    try:
                        if not conn.recv(4096):
                            raise EOFError
                    except socket.timeout:
                        pass
        except (OSError, EOFError):
            pass
        gone["after_s"] = time.monotonic() - gone["connack_at"]

    broker = rogue(script)
    client = make_client(local_cloud, broker, mode, keepalive=keepalive)
    caplog.set_level(logging.WARNING, "arduino_iot_cloud")
    assert drive(client, mode, lambda: "after_s" in gone, 25), caplog.text
    print("dripped link given up %.2f s after the CONNACK (keepalive %d s)" % (gone["after_s"], keepalive))
    assert gone["after_s"] <= 2 * keepalive + 0.5, gone  # 1.5 x keepalive after the CONNACK, plus a step
    assert "link presumed dead" in caplog.text


@pytest.mark.parametrize("mode", ("sync", "async"))
def test_one_step_handles_at_most_64_packets_of_a_flood(local_cloud, rogue, mode):
    # CONNACK, then 5,000 tiny QoS 0 PUBLISHes in one go, never a PUBACK: paho
    # handles max(1, messages in flight) packets per loop_read, so one step
    # worked through hundreds of them.  At most 64 per step, as on the socket transport.
    flood = 5000

    def script(broker, conn, number):
        broker.send(conn, number, CONNACK_OK)
        time.sleep(0.3)  # logged in, subscribed, its QoS 1 requests in flight (never acknowledged)
        broker.send(conn, number, b"".join(publish("/a/t/not-mine/e/i", b"\x80") for _ in range(flood)))
        broker.wait_for_close(conn, number, timeout=30)

    broker = rogue(script)
    client = make_client(local_cloud, broker, mode)
    engine = client.engine
    per_step = []
    handled = [0]
    original_step = engine.step
    original_on_message = client.session.on_message

    def counting_on_message(topic, payload, now):
        handled[0] += 1
        original_on_message(topic, payload, now)

    def counting_step(now, unix_time=None):
        before = handled[0]
        try:
            return original_step(now, unix_time)
        finally:
            per_step.append(handled[0] - before)

    client.session.on_message = counting_on_message
    engine.step = counting_step
    assert drive(client, mode, lambda: handled[0] >= flood, 30), handled
    print("flood of %d: %d steps with messages, at most %d messages in one step"
          % (flood, sum(1 for n in per_step if n), max(per_step)))
    assert max(per_step) <= 64, max(per_step)
    assert len(broker.accepted) == 1
