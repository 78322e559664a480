"""A device that takes over its own session (a second connection with the same
client id while the first is still open, as after a half-open link) against
the real local cloud: the emulator must keep following the new connection
(its subscribes recorded, the device online until the new connection ends).

What mosquitto 2.0.11 writes for it: "Client ID already connected, closing
old connection." and then the new connection's connect line; the old
connection gets no line of its own after that (it is closed as a duplicate,
which is not logged), whether the device leaves it open, closes it or sends
DISCONNECT on it while the new one is being set up.  These orders are tested
here, five rounds each with the old connection's end a little later each time.
"""

import socket
import ssl
import threading
import time

import pytest

from arduino_iot_cloud.mqtt import packets

pytestmark = pytest.mark.e2e


def read_packet(conn):
    """One MQTT packet (first byte, body) from a blocking socket."""
    first = conn.recv(1)
    if not first:
        raise EOFError("connection closed")
    length = shift = 0
    while True:
        byte = conn.recv(1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    body = b""
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            raise EOFError("connection closed")
        body += chunk
    return first[0], body


class RawDevice:
    """One TLS connection to the password listener, MQTT spoken by hand."""

    def __init__(self, cloud, dev):
        ctx = ssl.create_default_context(cafile=str(cloud.ca_file))
        raw = socket.create_connection(("127.0.0.1", cloud.password_port), timeout=5)
        self.conn = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        self.conn.sendall(bytes(packets.encode_connect(dev.device_id, dev.device_id, dev.secret, keepalive=30)))
        first, body = read_packet(self.conn)
        assert first == 0x20 and body[1] == 0, (first, body)
        self.pid = 0

    def subscribe(self, topic):
        self.pid += 1
        self.conn.sendall(bytes(packets.encode_subscribe(self.pid, topic, 1)))
        while True:
            first, body = read_packet(self.conn)
            if first == 0x90:
                assert body[2] != 0x80, "subscription to %s refused" % topic
                return

    def close(self):
        try:
            self.conn.close()
        except OSError:
            pass


def end_old(old, how):
    if how == "disconnect":
        try:
            old.conn.sendall(b"\xe0\x00")  # DISCONNECT
        except OSError:
            pass
    old.close()


@pytest.mark.parametrize("old_ends", ("taken-over", "closed-meanwhile", "disconnect-meanwhile"))
def test_a_session_taken_over_by_the_same_device_stays_tracked(local_cloud, device_factory, old_ends):
    # The old connection is left open (mosquitto closes it), or the device ends
    # it while its new connection is being set up; a few rounds, with the end
    # of the old one a little later each time.
    dev = device_factory(variant="event")
    emulator = local_cloud.emulator
    device_in = "/a/d/%s/e/i" % dev.device_id
    command_down = "/a/d/%s/c/dw" % dev.device_id
    for attempt in range(5):
        old = RawDevice(local_cloud, dev)
        old.subscribe(device_in)
        mark = emulator.mark(dev)
        ender = threading.Thread(target=lambda: (time.sleep(0.003 * attempt), end_old(old, old_ends.split("-")[0])))
        if old_ends != "taken-over":
            ender.start()
        new = RawDevice(local_cloud, dev)
        try:
            if old_ends != "taken-over":
                ender.join()
            emulator.wait_event(dev, "connect", since=mark)
            new.subscribe(command_down)
            # The new connection's subscribes are recorded, and the device stays online.
            emulator.wait_event(dev, "subscribe", command_down, since=mark, timeout=5)
            time.sleep(0.2)
            emulator._logwatch.poll()  # any later line of the old connection has been read by now
            new.subscribe(device_in)
            emulator.wait_event(dev, "subscribe", device_in, since=mark, timeout=5)
            assert emulator.device(dev).connected, emulator.events(dev, mark)
        finally:
            new.close()
            old.close()
        # The new connection's end is the device's.
        last = emulator.mark(dev)
        emulator.wait_event(dev, "disconnect", since=last - 1, timeout=5)
        deadline = time.monotonic() + 5
        while emulator.device(dev).connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not emulator.device(dev).connected, emulator.events(dev, mark)
