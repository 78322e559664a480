# Sans-I/O MQTT 3.1.1 client protocol.
#
# Theory of operation
# -------------------
# MQTTProtocol holds the state of one client connection and never touches a
# socket or a clock.  The driver:
#   1. calls connect(now) and sends data_to_send() once the socket is open;
#   2. feeds every received chunk to receive_data(data, now), which returns a
#      list of events (tuples, first item one of the EV_* kinds below);
#   3. calls poll(now) at the latest by the deadline it returned last time;
#      poll queues PINGREQ when the link has been quiet for keepalive seconds
#      and raises TransportError when no complete packet came from the broker
#      for 1.5 x keepalive (a half-open connection, or a peer dripping bytes
#      of a packet that never ends);
#   4. calls connection_lost(keep) when the socket is gone.
# Commands (publish, subscribe, ...) only append bytes to the outbound buffer.
#
# States: DISCONNECTED --connect--> CONNECTING --CONNACK 0--> CONNECTED
#         any state --connection_lost / refused CONNACK--> DISCONNECTED
# Rule 1: publish/subscribe/unsubscribe are legal only in CONNECTED.
# Rule 2: QoS 1 publishes stay in flight until PUBACK, across reconnects; after
#         the next CONNACK they are sent again, in their first order, with DUP.
#         connection_lost(keep) drops those whose topic keep() refuses (the
#         session's own requests, which it sends afresh after a reconnect).
# Rule 3: packet ids run 1..65535, wrap to 1, and skip ids still in use.
# Rule 4: at most max_inflight QoS 1 publishes await PUBACK (callers ask
#         can_publish() first), and at most 2 x max_inflight SUBSCRIBE and
#         UNSUBSCRIBE await their ack: a broker that leaves more unanswered is
#         broken, and the link is given up (TransportError).  So packet ids
#         never run out, whatever the broker does.
# Rule 5: only complete packets are proof of life, for the keepalive and for
#         the CONNACK timeout (which runs from connect(), whatever arrives).
# Rule 6: a PUBLISH larger than max_packet_size is skipped, not buffered: its
#         bytes are dropped as they come, a QoS 1 one is acknowledged all the
#         same (or the broker would hold it in flight for good), the driver
#         hears of it (EV_SKIPPED), and the connection stays up.

from ..compat import const
from ..errors import ConnectRefused, DecodeError, LocalError, SubscribeRefused, TransportError
from ..retry import connack_timeout_ms, silence_limit_ms
from . import packets as p

DISCONNECTED = const(0)
CONNECTING = const(1)
CONNECTED = const(2)

EV_CONNECTED = const(1)    # (EV_CONNECTED, session_present)
EV_MESSAGE = const(2)      # (EV_MESSAGE, topic, payload, qos, retain)
EV_PUBACK = const(3)       # (EV_PUBACK, pid)
EV_SUBACK = const(4)       # (EV_SUBACK, pid, granted_qos_list)
EV_UNSUBACK = const(5)     # (EV_UNSUBACK, pid)
EV_SKIPPED = const(6)      # (EV_SKIPPED, topic, size): a PUBLISH over max_packet_size, dropped


class MQTTProtocol:
    def __init__(self, client_id, username=None, password=None, keepalive=10,
                 max_packet_size=131072, max_inflight=32):
        self.client_id = client_id
        self._username = username
        self._password = password
        self.keepalive_ms = keepalive * 1000
        self.keepalive = keepalive
        self.max_inflight = max_inflight
        self.max_packet_size = max_packet_size
        self.state = DISCONNECTED
        self._reader = p.PacketReader(max_packet_size)
        self._out = bytearray()
        self._next_pid = 0
        self._inflight = {}        # pid -> encoded PUBLISH (QoS 1), awaiting PUBACK
        self._inflight_order = []  # pids in the order they were first sent
        self._pending = {}         # pid -> topic (SUBSCRIBE) or None (UNSUBSCRIBE) awaiting its ack
        self._last_rx = 0          # when the last complete packet arrived
        self._last_tx = 0
        self._connect_at = 0
        self.packets_in = 0        # complete packets received, ever (drivers count work with it)
        self.backlog = False       # receive_data stopped at its packet limit; more may be buffered

    # --- connection life cycle ----------------------------------------------
    def connect(self, now):
        """Start a new connection: queue CONNECT.  The socket must be fresh."""
        self._reader.reset()
        self._out = bytearray(p.encode_connect(self.client_id, self._username, self._password,
                                               self.keepalive))
        self._pending = {}
        self.backlog = False
        self.state = CONNECTING
        self._connect_at = now
        self._last_rx = now
        self._last_tx = now

    def connection_lost(self, keep=None):
        """The transport is gone.  In-flight publishes are kept for later,
        except those whose topic keep(topic) refuses (Rule 2)."""
        self.state = DISCONNECTED
        self._out = bytearray()
        self._pending = {}
        self.backlog = False
        self._reader.reset()
        if keep is not None:
            for pid in list(self._inflight_order):
                if not keep(p.publish_topic(self._inflight[pid])):
                    del self._inflight[pid]
                    self._inflight_order.remove(pid)

    def disconnect(self):
        """Queue DISCONNECT; the driver closes the socket after sending it."""
        if self.state == CONNECTED:
            self._out.extend(p.DISCONNECT)
        self.state = DISCONNECTED

    @property
    def connected(self):
        return self.state == CONNECTED

    # --- outbound ------------------------------------------------------------
    def data_to_send(self):
        out = self._out
        if not out:
            return b""
        self._out = bytearray()
        return out

    def _send(self, packet):
        self._out.extend(packet)

    def _allocate_pid(self):
        pid = self._next_pid
        for _ in range(65535):
            pid = pid % 65535 + 1
            if pid not in self._inflight and pid not in self._pending:
                self._next_pid = pid
                return pid
        raise LocalError("no free MQTT packet id")

    def can_publish(self):
        """True when a QoS 1 publish would not exceed max_inflight."""
        return self.state == CONNECTED and len(self._inflight) < self.max_inflight

    def publish(self, topic, payload, qos=1, retain=False):
        """Queue a PUBLISH; returns its packet id (0 for QoS 0)."""
        self._require_connected()
        if qos not in (0, 1):
            raise LocalError("only QoS 0 and 1 are supported")
        if qos and len(self._inflight) >= self.max_inflight:
            raise LocalError("%d QoS 1 publishes in flight already; ask can_publish() first"
                             % self.max_inflight)
        pid = self._allocate_pid() if qos else 0
        packet = p.encode_publish(topic, payload, qos, pid, retain)
        if qos:
            self._inflight[pid] = packet
            self._inflight_order.append(pid)
        self._send(packet)
        return pid

    def subscribe(self, topic, qos=1):
        self._require_connected()
        pid = self._pending_pid()
        self._pending[pid] = topic
        self._send(p.encode_subscribe(pid, topic, qos))
        return pid

    def unsubscribe(self, topic):
        self._require_connected()
        pid = self._pending_pid()
        self._pending[pid] = None
        self._send(p.encode_unsubscribe(pid, topic))
        return pid

    def _pending_pid(self):
        # Rule 4: an ack is owed for every one; a broker that never answers
        # must not make this table (and the packet ids) grow without end.
        if len(self._pending) >= 2 * self.max_inflight:
            raise TransportError("the broker left %d SUBSCRIBE/UNSUBSCRIBE unanswered; link presumed broken"
                                 % len(self._pending))
        return self._allocate_pid()

    def inflight_count(self):
        return len(self._inflight)

    def _require_connected(self):
        if self.state != CONNECTED:
            raise LocalError("MQTT client is not connected")

    # --- timers ---------------------------------------------------------------
    def poll(self, now):
        """Run the keepalive timers; return the next deadline (ms, same clock as now)."""
        if self.state == DISCONNECTED:
            return None
        if self.state == CONNECTING:
            limit = connack_timeout_ms(self.keepalive)
            if now - self._connect_at >= limit:
                raise TransportError("no CONNACK from the broker within %d ms" % limit)
            return self._connect_at + limit
        if not self.keepalive_ms:
            return None
        dead_at = self._last_rx + silence_limit_ms(self.keepalive)
        if now >= dead_at:
            raise TransportError("nothing received from the broker for %d ms; link presumed dead"
                                 % (now - self._last_rx))
        ping_at = self._last_tx + self.keepalive_ms
        if now >= ping_at:
            self._out.extend(p.PINGREQ)
            self._last_tx = now
            ping_at = now + self.keepalive_ms
        return min(ping_at, dead_at)

    def sent(self, now):
        """The driver tells when bytes actually left, for the keepalive timer."""
        self._last_tx = now

    # --- inbound ---------------------------------------------------------------
    def receive_data(self, data, now, max_packets=0):
        """Feed received bytes; returns a list of events.

        With max_packets, at most that many packets are handled; `backlog`
        then tells whether it stopped there (call again with b"" for the rest).
        Raises DecodeError for a malformed or unexpected packet, ConnectRefused
        for a refused CONNACK and SubscribeRefused for a refused subscription;
        whatever the error, the connection must be closed.
        """
        reader = self._reader
        if data:
            reader.feed(data)
        events = []
        handled = 0
        self.backlog = False
        while True:
            if max_packets and handled >= max_packets:
                self.backlog = True
                return events
            packet = reader.next_packet()
            if packet is None:
                return events
            handled += 1
            self.packets_in += 1
            self._last_rx = now  # Rule 5
            if reader.skipped:
                self._skipped(packet[0], packet[1], reader.skipped, events)
            else:
                self._handle(packet[0], packet[1], events)

    def _skipped(self, first, head, size, events):
        # Rule 6: head is the packet's topic and packet id, without payload.
        if self.state != CONNECTED:
            raise DecodeError("PUBLISH before CONNACK")
        topic, _payload, qos, pid, _retain, _dup = p.decode_publish(first, head)
        if qos == 2:
            raise DecodeError("PUBLISH with QoS 2, which this client never subscribes with")
        if qos == 1:
            self._out.extend(p.encode_puback(pid))
        events.append((EV_SKIPPED, topic, size))

    def _handle(self, first, body, events):
        kind = first & 0xF0
        if kind == p.PUBLISH:
            if self.state != CONNECTED:
                raise DecodeError("PUBLISH before CONNACK")
            topic, payload, qos, pid, retain, _dup = p.decode_publish(first, body)
            if qos == 2:
                raise DecodeError("PUBLISH with QoS 2, which this client never subscribes with")
            if qos == 1:
                self._out.extend(p.encode_puback(pid))
            events.append((EV_MESSAGE, topic, payload, qos, retain))
            return
        if first & 0x0F:
            raise DecodeError("MQTT packet 0x%02x has reserved flags set" % first)
        if kind == p.CONNACK:
            self._on_connack(body, events)
        elif self.state != CONNECTED:
            raise DecodeError("MQTT packet 0x%02x before CONNACK" % first)
        elif kind == p.PUBACK:
            pid = self._pid_of(body, "PUBACK")
            if self._inflight.pop(pid, None) is not None:
                self._inflight_order.remove(pid)
                events.append((EV_PUBACK, pid))
        elif kind == p.SUBACK:
            pid = p.u16(body, 0)
            if len(body) < 3:
                raise DecodeError("SUBACK without return codes")
            if pid in self._pending and self._pending[pid] is not None:
                topic = self._pending.pop(pid)
                codes = list(body[2:])
                if 0x80 in codes:
                    raise SubscribeRefused(topic)
                events.append((EV_SUBACK, pid, codes))
        elif kind == p.UNSUBACK:
            pid = self._pid_of(body, "UNSUBACK")
            if pid in self._pending and self._pending[pid] is None:
                del self._pending[pid]
                events.append((EV_UNSUBACK, pid))
        elif kind == p.PINGRESP:
            if body:
                raise DecodeError("PINGRESP with a body")
        else:
            raise DecodeError("unexpected MQTT packet type 0x%02x from the broker" % first)

    def _pid_of(self, body, name):
        if len(body) != 2:
            raise DecodeError("%s of %d bytes, expected 2" % (name, len(body)))
        return p.u16(body, 0)

    def _on_connack(self, body, events):
        if self.state != CONNECTING:
            raise DecodeError("unexpected CONNACK")
        if len(body) != 2:
            raise DecodeError("CONNACK of %d bytes, expected 2" % len(body))
        code = body[1]
        if code:
            self.state = DISCONNECTED
            raise ConnectRefused(code)
        self.state = CONNECTED
        # Rule 2: resend what the broker never acknowledged, oldest first.
        for pid in self._inflight_order:
            packet = p.set_dup(self._inflight[pid])
            self._inflight[pid] = packet
            self._out.extend(packet)
        events.append((EV_CONNECTED, bool(body[0] & 1)))
