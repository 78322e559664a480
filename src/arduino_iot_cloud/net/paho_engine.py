# paho-mqtt 2.x as the MQTT transport (CPython only): transport="paho".
#
# PahoEngine keeps the engine contract (engine.py: its retries, failures
# and the shape of a step are the base class's) and feeds the same
# DeviceSession, so both drivers run it unchanged.
#
# paho runs WITHOUT its background thread (no loop_start): step() drives it
# with loop_read / loop_misc / loop_write on paho's own socket, so on_connect
# and on_message (and through them the user's on_write callbacks) run inside
# step(), in the caller's thread.  Reconnects are ours too: a lost link or a
# refused login is reported to our Backoff, never to paho's reconnect_delay_set.
#
# What paho does not check, we do, on the bytes it reads: _GuardedSocket is
# the SSLSocket paho gets from our SSLContext, and its _InboundGuard follows
# the MQTT framing of everything paho reads (paho reads each fixed header one
# byte at a time, then the body).  It refuses, as MQTTProtocol does, a
# packet other than PUBLISH announced larger than 128 KiB (from its header:
# paho never buffers the body), any packet before the CONNACK, a second
# CONNACK, a PUBLISH with QoS 2 (paho would hold it until a PUBREL), and
# packet types or flags a broker must not send.  A refusal ends paho's read
# as a lost connection, and step() drops the link with the reason and backs
# off.  A PUBLISH over 128 KiB is skipped instead, as MQTTProtocol skips it:
# the socket reads each fixed header ahead of paho, and the bytes of an
# oversized PUBLISH are read and dropped as they come, never shown to paho
# (memory stays bounded); step() logs it and acknowledges it (QoS 1), and
# the link stays up.  And we bound what waits in paho's write queue: a
# broker that stops reading cannot make it grow without end.
#
# The guard also counts complete packets, which gives us what paho lacks:
# only complete packets are proof of life (paho takes any body byte as life,
# so a broker dripping one byte a second kept the link forever), and one
# step reads at most _MAX_PACKETS packets (the guard tells paho "nothing to
# read" between two packets once the step's budget is spent; paho's
# loop_read() ignores its max_packets).  A SUBACK with the failure code 0x80
# is an error of the attach (SubscribeRefused), as on the socket transport.
#
# What paho cannot do here:
#   - keys in a PKCS#11 token: paho wraps its socket with Python's ssl module,
#     which cannot take a key from an OpenSSL engine (M2Crypto); ConfigError.
#   - SE05x keys: they need MicroPython's se05x module; ConfigError.
#
# paho's connect() blocks (TCP connect and TLS handshake, bounded by
# connect_timeout), so it runs in a short-lived thread, one attempt at a time
# (_ConnectAttempt).  That thread calls no callback: paho answers nothing
# before the CONNACK, which step() reads in the caller's thread.

from __future__ import annotations

import builtins
import ssl
import threading
from typing import Any, Dict, List, Optional, Set, Tuple

from ..compat import getLogger
from ..errors import ConfigError, ConnectRefused, DecodeError, RemoteError, SubscribeRefused, TransportError
from ..retry import Backoff, connack_timeout_ms, silence_limit_ms
from ..session import DeviceSession
from ..tls import TLSConfig
from .connection import tls_error
from .engine import Engine
from .socket_engine import MAX_PACKETS, MAX_READS

try:
    import paho.mqtt.client as mqtt
except ImportError:  # an optional extra
    mqtt = None

log = getLogger("arduino_iot_cloud.paho")

EXTRA_HINT = "pip install arduino-iot-cloud[paho]"

# At most this many loop_read calls, and this many packets read, per step
# (as the socket engine): a flood of tiny messages cannot make one step long.
_MAX_READS = MAX_READS
_MAX_PACKETS = MAX_PACKETS
# paho's keepalive timers (its PINGREQ) run in loop_misc(), so step() asks
# to be called every keepalive/20 (50 ms to 1 s).  The link is given up 1.5 x
# keepalive after the last complete packet (_check_life), as MQTTProtocol does,
# and the broker gets as long to answer CONNECT (retry.py).
_HOUSEKEEPING_MIN_MS = 50
_HOUSEKEEPING_MAX_MS = 1000
# How often step() looks whether a connect under way has finished.
_CONNECT_POLL_MS = 10

# The largest MQTT packet accepted from the broker (remaining length), as MQTTProtocol.
MAX_PACKET_SIZE = 131072
# An oversized PUBLISH is dropped in reads of at most this many bytes.
_DROP_CHUNK = 16384
# At most this many packets wait in paho's write queue.  Past it the broker has
# stopped reading what we send (each QoS 1 message it sends adds a PUBACK to
# the queue): the link is dropped.
MAX_QUEUED_PACKETS = 1024
_CONNACK = 0x20
_PUBLISH = 0x30
# What a broker may send a client that subscribes with QoS 0 and 1: CONNACK,
# PUBLISH, PUBACK, SUBACK, UNSUBACK, PINGRESP (as MQTTProtocol accepts).
_FROM_BROKER = (0x20, 0x30, 0x40, 0x90, 0xB0, 0xD0)

# paho 2.x reports an MQTT 3.1.1 CONNACK refusal as an MQTT 5 reason code;
# ConnectRefused carries the 3.1.1 return code the broker sent.
_V311_CODE = {132: 1, 133: 2, 136: 3, 134: 4, 135: 5}


def _require_paho() -> None:
    if mqtt is None:
        raise ConfigError("transport='paho' needs paho-mqtt: %s" % EXTRA_HINT)
    if not hasattr(mqtt, "CallbackAPIVersion"):
        raise ConfigError("transport='paho' needs paho-mqtt 2.x (found an older one): %s" % EXTRA_HINT)


class _Refused(OSError):
    """Raised out of recv() to paho, which takes any OSError there as a lost
    connection: it closes the socket and never sees the packet."""


class _InboundGuard:
    """Follows the MQTT framing of what paho reads from one connection.

    _GuardedSocket reads each fixed header whole into `head` before paho sees
    any of it; take_header() checks it and raises _Refused (keeping the reason
    in `error`) for a packet that is unacceptable, or begins the drop of an
    oversized PUBLISH.  body_read() counts the body bytes paho reads after it.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.error: Optional[DecodeError] = None
        self.qos1_publishes = 0  # each one makes paho queue a PUBACK
        self.packets = 0         # complete packets read, ever
        self.stop_at = 0         # with packets at this count, read no further (0: no limit)
        self._connack_seen = False
        self.head = b""          # the next fixed header, as far as it is read
        self.held = b""          # a checked fixed header, not yet all handed to paho
        self.body_left = 0       # body bytes of the current packet still to come
        # An oversized PUBLISH being dropped: its bytes still to come, and its
        # first bytes (topic length, topic, packet id) kept for the log.
        self.drop_left = 0
        self._drop_first = 0
        self._drop_size = 0
        self._drop_head = bytearray()
        # (topic, size, packet id or None) of each PUBLISH dropped, for step()
        # to log and acknowledge.
        self.skipped: List[Tuple[str, int, Optional[int]]] = []

    def may_read(self) -> bool:
        """False between two packets once this step's budget is spent."""
        return not (self.stop_at and self.packets >= self.stop_at and self.between_packets())

    def between_packets(self) -> bool:
        """True when what paho reads next is the first byte of a packet."""
        return not self.body_left and not self.held

    def head_length(self) -> Optional[int]:
        """The remaining length announced by the header in `head`; None until it is complete."""
        head = self.head
        if len(head) == 2 and head[1] < 0x80:  # most packets: one length byte
            return head[1]
        if len(head) < 2 or head[-1] & 0x80:
            if len(head) > 4:
                self._refuse("MQTT remaining length uses more than 4 bytes")
            return None
        length = 0
        for i in range(1, len(head)):
            length |= (head[i] & 0x7F) << (7 * (i - 1))
        return length

    def take_header(self, length: int) -> bool:
        """Check the complete header in `head`, announcing `length` body bytes.
        True: it is held for paho.  False: it announced a PUBLISH larger than
        max_size, whose bytes are now to be dropped."""
        head, self.head = self.head, b""
        first = head[0]
        self._packet_type(first)
        if length > self.max_size:
            if first & 0xF0 != _PUBLISH:
                self._refuse("MQTT packet of %d bytes exceeds the maximum of %d" % (length, self.max_size))
            self.drop_left = self._drop_size = length
            self._drop_first = first
            self._drop_head = bytearray()
            return False
        self.held = head
        self.body_left = length
        if not length:
            self.packets += 1
        return True

    def hand_out(self, n: int) -> bytes:
        """Up to n bytes of the held header, for paho."""
        got, self.held = self.held[:n], self.held[n:]
        return got

    def body_read(self, n: int) -> None:
        self.body_left -= n
        if not self.body_left:
            self.packets += 1

    def dropped(self, data: bytes) -> None:
        """Bytes of the oversized PUBLISH read and dropped; its first bytes are kept."""
        self.drop_left -= len(data)
        head = self._drop_head
        need = self._drop_head_size()
        while data and len(head) < need:
            take = need - len(head)
            head += data[:take]
            data = data[take:]
            need = self._drop_head_size()
        if self.drop_left:
            return
        topic_end = 2 + ((head[0] << 8) | head[1])
        topic = bytes(head[2:topic_end]).decode("utf-8", "replace")  # for the log only
        pid = (head[topic_end] << 8) | head[topic_end + 1] if self._drop_first & 0x06 else None
        self.skipped.append((topic, self._drop_size, pid))
        self.packets += 1

    def _drop_head_size(self) -> int:
        """How many first bytes of the dropped PUBLISH to keep: topic length, topic, packet id."""
        head = self._drop_head
        if len(head) < 2:
            return 2
        size = 2 + ((head[0] << 8) | head[1]) + (2 if self._drop_first & 0x06 else 0)
        if size > self._drop_size:
            self._refuse("PUBLISH topic longer than its packet")
        return size

    def _packet_type(self, first: int) -> None:
        kind = first & 0xF0
        if kind not in _FROM_BROKER:
            self._refuse("unexpected MQTT packet type 0x%02x from the broker" % first)
        if kind != _PUBLISH and first & 0x0F:
            self._refuse("MQTT packet 0x%02x has reserved flags set" % first)
        if kind == _CONNACK:
            if self._connack_seen:
                self._refuse("unexpected CONNACK")
            self._connack_seen = True
        elif not self._connack_seen:
            self._refuse("PUBLISH before CONNACK" if kind == _PUBLISH
                         else "MQTT packet 0x%02x before CONNACK" % first)
        elif kind == _PUBLISH:
            qos = (first >> 1) & 3
            if qos >= 2:
                # paho would keep a QoS 2 message until a PUBREL that may never come.
                self._refuse("PUBLISH with QoS %d, which this client never subscribes with" % qos)
            if qos == 1:
                self.qos1_publishes += 1

    def _refuse(self, reason: str) -> None:
        self.error = DecodeError(reason)
        raise _Refused(reason)


class _GuardedSocket(ssl.SSLSocket):
    """paho's TLS socket: what it reads passes through the connection's guard.

    recv() and recv_into() both read through read(), so the guard sits there.
    Each packet's fixed header is read whole and checked before paho sees its
    first byte, so that an oversized PUBLISH can be dropped unseen."""

    guard: Optional[_InboundGuard] = None

    def read(self, len: int = 1024, buffer: Any = None) -> Any:  # noqa: A002 (SSLSocket's names)
        guard = self.guard
        if guard is None:
            return super().read(len, buffer)
        if guard.error is not None:
            raise _Refused(str(guard.error))
        if not guard.may_read():
            # paho takes this as "nothing to read yet" and reads nothing of the
            # next packet: it stays buffered for the next step.
            raise ssl.SSLWantReadError("the packets of this step are read")
        if guard.between_packets() and not self._next_header(guard):
            return b"" if buffer is None else 0  # the broker closed the connection
        # (`len` is SSLSocket's name for the size asked for: builtins.len measures)
        if guard.held:
            got = guard.hand_out(len)
            if buffer is None:
                return got
            buffer[:builtins.len(got)] = got
            return builtins.len(got)
        got = super().read(min(len, guard.body_left), buffer)  # bytes; with a buffer, how many went into it
        guard.body_read(got if buffer is not None else builtins.len(got))
        return got

    def _next_header(self, guard: _InboundGuard) -> bool:
        """Read the next packet's whole fixed header into the guard; an
        oversized PUBLISH on the way is read and dropped.  False at the end
        of the connection; SSLWantReadError while bytes are to come (what is
        read so far stays in the guard)."""
        while True:
            while guard.drop_left:
                data = super().read(min(guard.drop_left, _DROP_CHUNK))
                if not data:
                    return False
                guard.dropped(data)
                if not guard.drop_left:
                    # paho's read ends here, so that step() acknowledges the
                    # dropped message before paho reads the next one.
                    raise ssl.SSLWantReadError("an oversized PUBLISH was dropped")
            length = guard.head_length()
            while length is None:
                byte = super().read(1)
                if not byte:
                    return False
                guard.head += byte
                length = guard.head_length()
            if guard.take_header(length):
                return True


class _PahoContext(ssl.SSLContext):
    """The SSLContext paho gets: its sockets are _GuardedSockets, each with a
    guard of its own; with server_name set, the broker's certificate is
    checked against that name (ssl_params["server_hostname"]), not the host
    paho connects to."""

    sslsocket_class = _GuardedSocket
    server_name = ""
    max_packet_size = MAX_PACKET_SIZE

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        if self.server_name:
            kwargs["server_hostname"] = self.server_name
        wrapped = super().wrap_socket(sock, *args, **kwargs)
        wrapped.guard = _InboundGuard(self.max_packet_size)  # type: ignore[attr-defined]
        return wrapped


def ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """The SSLContext paho gets: the same checks and credentials as TLSConfig.wrap()."""
    if tls.hardware == "pkcs11":
        raise ConfigError("transport='paho' cannot use a key held in a PKCS#11 token: paho-mqtt opens TLS "
                          "with Python's ssl module, which cannot take a key from an OpenSSL engine "
                          "(M2Crypto); use transport='socket'")
    if tls.hardware is not None:
        raise ConfigError("transport='paho' cannot use %s keys: they need MicroPython's %s module"
                          % (tls.hardware, tls.hardware))
    ctx = _PahoContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.server_name = tls.server_hostname or ""
    try:
        tls.configure(ctx)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError("cannot set up TLS for paho: %s" % e)
    return ctx


class _Conn:
    """What the drivers wait on: paho's socket, for select/poll and the event loop."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock

    def pollable(self) -> Any:
        return self.sock


class _Link:
    """The session's MQTT link, over paho's publish/subscribe/unsubscribe."""

    def __init__(self, engine: "PahoEngine") -> None:
        self._engine = engine

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self._engine.queued += 1
        _rc, mid = self._engine.client.subscribe(topic, qos)
        if mid is not None:
            self._engine.subscribing[mid] = topic

    def unsubscribe(self, topic: str) -> None:
        self._engine.queued += 1
        self._engine.client.unsubscribe(topic)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self._engine.queued += 1
        info = self._engine.client.publish(topic, payload, qos)
        if qos and info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            # paho keeps it and sends it again after a reconnect until PUBACK.
            self._engine.unacked.add(info.mid)

    def can_publish(self) -> bool:
        engine = self._engine
        return engine.logged_in and len(engine.unacked) < engine.max_inflight

    def inflight_count(self) -> int:
        """QoS 1 messages handed to paho and not acknowledged yet (as MQTTProtocol's)."""
        return len(self._engine.unacked)


class _ConnectAttempt:
    """One paho connect() in a thread of its own, so that neither update() nor
    the event loop waits for the TCP connect and the TLS handshake.

    The thread owns the paho client until it has finished; the engine reads
    `error` only after `finished`.  An attempt abandoned by close() closes the
    socket it opened itself.
    """

    def __init__(self, client: Any, host: str, port: int, keepalive: int) -> None:
        self.finished = False
        self.error: Optional[Exception] = None
        self._abandoned = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(client, host, port, keepalive),
                                        name="paho-connect %s:%d" % (host, port), daemon=True)
        self._thread.start()

    def _run(self, client: Any, host: str, port: int, keepalive: int) -> None:
        try:
            client.connect(host, port, keepalive)
        except Exception as e:  # refused, unreachable, timed out, TLS handshake or certificate check
            self.error = e
        with self._lock:
            self.finished = True
            if self._abandoned:
                _close_socket_of(client)

    def abandon(self) -> bool:
        """Leave the connection to the thread to close; False if it has already finished."""
        with self._lock:
            self._abandoned = not self.finished
            return self._abandoned

    def running(self) -> bool:
        return self._thread.is_alive()


def _close_socket_of(client: Any) -> None:
    sock = client.socket()
    if sock is not None:
        sock.close()


class PahoEngine(Engine):
    """The engine contract (engine.py) with paho-mqtt doing the MQTT.

    connect() starts a _ConnectAttempt; step() picks up its result."""

    def __init__(self, client_id: str, username: Optional[str], password: Optional[str], keepalive: int,
                 host: str, port: int, tls: TLSConfig, session: DeviceSession,
                 backoff: Optional[Backoff] = None, connect_timeout: float = 10.0,
                 max_inflight: int = 32) -> None:
        _require_paho()
        # (first: connect_timeout, set by Engine.__init__, lives in the paho client)
        self.client = self._make_client(client_id, username, password, tls)
        Engine.__init__(self, host, port, tls, session, keepalive, backoff, connect_timeout)
        self.max_inflight = max_inflight
        period = keepalive * 50 if keepalive else _HOUSEKEEPING_MAX_MS
        self._housekeeping_ms = max(_HOUSEKEEPING_MIN_MS, min(_HOUSEKEEPING_MAX_MS, period))
        self._abandoned: Optional[_ConnectAttempt] = None  # one close() left to finish on its own
        self.logged_in = False         # CONNACK 0 seen on the current connection
        self.unacked: Set[int] = set()  # mids of QoS 1 publishes awaiting PUBACK
        self.subscribing: Dict[int, str] = {}  # mid -> topic of SUBSCRIBEs awaiting SUBACK
        self._link = _Link(self)
        self._now = 0
        self._connect_at = 0
        self._refused: Optional[ConnectRefused] = None
        self._lost: Optional[str] = None  # why paho closed the socket
        self._guard: Optional[_InboundGuard] = None  # the current connection's
        # When the last complete packet came from the broker, and how many the
        # guard had counted then: paho takes any byte as life, we do not.
        self._last_rx = 0
        self._packets_seen = 0
        # Packets handed to paho since its write queue was last seen empty: our
        # publishes and subscribes, and a PUBACK for each QoS 1 message read.
        self.queued = 0
        self._counted_publishes = 0
        self._callback_error: Optional[BaseException] = None  # raised in a paho callback

    def _make_client(self, client_id: str, username: Optional[str], password: Optional[str],
                     tls: TLSConfig) -> Any:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                        protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        if password is not None:
            c.username_pw_set(username, password)
        c.tls_set_context(ssl_context(tls))
        c.max_inflight_messages_set(0)  # unlimited in paho; can_publish() is the limit
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        return c

    # --- the engine contract ---------------------------------------------------------
    @property
    def connect_timeout(self) -> float:
        return self.client.connect_timeout

    @connect_timeout.setter
    def connect_timeout(self, seconds: float) -> None:
        # paho accepts a new value only before the first connect.
        self.client.connect_timeout = seconds

    def due(self, now: int) -> bool:
        if self._abandoned is not None and self._abandoned.running():
            return False  # that thread still holds the paho client
        return Engine.due(self, now)

    def connect(self, now: int, address: Any = None) -> bool:
        """Start a connect attempt; it goes on in its own thread, and step()
        takes its result.  Returns False: the socket is not open yet."""
        self._now = now
        self.logged_in = False
        self._refused = None
        self._lost = None
        self.connecting = _ConnectAttempt(self.client, self.host, self.port, self.keepalive)
        return False

    def _connect_finished(self, now: int) -> bool:
        """Take the result of the finished attempt; True when the socket is open."""
        error = self.connecting.error
        self.connecting = None
        if isinstance(error, OSError):
            self.failed(now, tls_error(error, self.host, self.port)
                        or TransportError("cannot connect to %s:%d: %s" % (self.host, self.port, error)))
            return False
        if error is not None:  # e.g. a host name paho cannot use
            self.failed(now, TransportError("cannot connect to %s:%d: %s" % (self.host, self.port, error)))
            return False
        sock = self.client.socket()
        if sock is None:
            self.failed(now, TransportError("cannot connect to %s:%d: %s"
                                            % (self.host, self.port, self._lost or "connection closed")))
            return False
        self.conn = _Conn(sock)
        self._guard = getattr(sock, "guard", None)
        self.queued = 0
        self._counted_publishes = 0
        self.subscribing.clear()
        self._connect_at = now
        self._last_rx = now
        self._packets_seen = 0
        log.info("connected to %s:%d (paho), logging in", self.host, self.port)
        return True

    def _connect_step(self, now: int) -> Optional[int]:
        if self.connecting is None:
            return self.next_attempt
        if self.connecting.finished and self._connect_finished(now):
            return None
        return now + _CONNECT_POLL_MS if self.connecting is not None else self.next_attempt

    def _exchange(self, now: int) -> Optional[int]:
        """Read, run paho's timers and ours; the next deadline."""
        self._now = now
        more = self._read()
        self._check_life(now)
        if self.logged_in:
            # paho's keepalive (PINGREQ, or close a dead link) only once logged
            # in: paho stamps its clocks when connect() starts, before the TLS
            # handshake, so before the CONNACK it would close a connection
            # whose handshake took longer than keepalive, at every attempt
            # (the broker saw the device connect, never subscribe).  Until
            # the CONNACK our own timeout runs, from the open connection.
            self.client.loop_misc()
        self._check_link()
        deadline = now if more else now + self._housekeeping_ms
        if self.logged_in and self.keepalive:
            deadline = min(deadline, self._last_rx + silence_limit_ms(self.keepalive))
        if not self.logged_in:
            limit = connack_timeout_ms(self.keepalive)
            if now - self._connect_at >= limit:
                raise TransportError("no CONNACK from the broker within %d ms" % limit)
        return deadline

    def flush(self, now: int) -> None:
        """Send what paho has queued; what the socket does not take now stays queued."""
        if self.conn is None:
            return
        if self.client.want_write():
            self.client.loop_write()
        self._check_link()

    def pending_output(self) -> bool:
        return self.conn is not None and self.client.want_write()

    def wait_target(self) -> Optional[Tuple[Any, bool]]:
        # (while a connect runs in its thread, step() asks to be called again soon)
        return (self.conn.pollable(), False) if self.conn is not None else None

    def _abandon_connect(self) -> None:
        if self.connecting.abandon():
            self._abandoned = self.connecting
        else:
            _close_socket_of(self.client)

    # --- internals ----------------------------------------------------------------------
    def _read(self) -> bool:
        """Let paho read and handle packets; True if TLS still holds unread
        bytes or the step has read its _MAX_PACKETS packets."""
        guard = self._guard
        if guard is not None:
            # paho's loop_read() reads as many packets as it has messages in
            # flight, whatever max_packets says: the guard stops it.
            guard.stop_at = guard.packets + _MAX_PACKETS
        for _ in range(_MAX_READS):
            self._check_queue()
            if guard is not None and not guard.may_read():
                return True
            rc = self.client.loop_read()
            if guard is not None and guard.skipped:
                self._acknowledge_skipped(guard)
            if self._callback_error is not None:
                # paho has finished with that packet (its input is reset), so
                # the next step goes on with the next one, as on the socket transport.
                error, self._callback_error = self._callback_error, None
                raise error
            if rc != mqtt.MQTT_ERR_SUCCESS:
                if rc != mqtt.MQTT_ERR_NO_CONN:
                    self._lost = mqtt.error_string(rc)
                return False
            sock = self.client.socket()
            # Bytes already decrypted wait in the TLS object, where poll cannot see them.
            if sock is None or not sock.pending():
                return False
        return True

    def _acknowledge_skipped(self, guard: _InboundGuard) -> None:
        """Log each oversized PUBLISH the guard dropped; acknowledge it if QoS 1,
        as MQTTProtocol does: the broker must not send it again."""
        for topic, size, pid in guard.skipped:
            self._skipped(topic, size, guard.max_size)
            if pid is not None:
                # paho has no public call to acknowledge a message it never saw.
                self.client._send_puback(pid)
        guard.skipped.clear()

    def _check_queue(self) -> None:
        """Drop the link once MAX_QUEUED_PACKETS wait in paho's write queue."""
        if not self.client.want_write():
            self.queued = 0
        guard = self._guard
        if guard is not None:
            self.queued += guard.qos1_publishes - self._counted_publishes
            self._counted_publishes = guard.qos1_publishes
        if self.queued > MAX_QUEUED_PACKETS:
            raise TransportError("the broker is not reading: over %d MQTT packets wait to be sent"
                                 % MAX_QUEUED_PACKETS)

    def _check_life(self, now: int) -> None:
        """Only complete packets are proof of life (as MQTTProtocol): the link
        is given up 1.5 x keepalive after the last one, whatever bytes of an
        unfinished packet keep coming (paho counts those as life)."""
        guard = self._guard
        if guard is None:
            return
        if guard.packets != self._packets_seen:
            self._packets_seen = guard.packets
            self._last_rx = now
        elif self.logged_in and self.keepalive and now - self._last_rx >= silence_limit_ms(self.keepalive):
            raise TransportError("nothing received from the broker for %d ms; link presumed dead"
                                 % (now - self._last_rx))

    def _check_link(self) -> None:
        if self._refused is not None:
            raise self._refused
        if self.client.socket() is None:
            if self._guard is not None and self._guard.error is not None:
                raise self._guard.error  # refused by the guard: a protocol error, as on the socket transport
            raise TransportError("connection lost: %s" % (self._lost or "closed"))

    def _close_link(self, polite: bool) -> None:
        if self.conn is not None:
            self.conn = None
            if self.client.socket() is not None:
                # paho's own way out (after an error too: it resets paho's
                # state): DISCONNECT, then it closes the socket.
                self.client.disconnect()
                self.client.loop_write()
            _close_socket_of(self.client)  # if the DISCONNECT could not be written now
        self.logged_in = False

    # --- paho callbacks (run inside step(), in the caller's thread) -----------------------
    # An exception raised out of a callback would leave paho with the packet
    # half handled (its input not reset: the same packet again at every read).
    # So the callbacks keep it, and _read() raises it once paho is done.
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._refused = ConnectRefused(_V311_CODE.get(reason_code.value, reason_code.value))
            return
        self.logged_in = True
        try:
            self._logged_in(self._link, self._now)
        except Exception as e:
            self._callback_error = e

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._lost = str(reason_code)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if not self.logged_in:  # the guard refuses a PUBLISH before the CONNACK; this is a second lock
            return
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            log.error("ignoring a message whose topic is not UTF-8")
            return
        try:
            self.session.on_message(topic, msg.payload, self._now)
        except Exception as e:
            if self._callback_error is None:
                self._callback_error = e

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        self.unacked.discard(mid)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        topic = self.subscribing.pop(mid, None)
        if topic is None:
            return  # not one of ours on this connection, as MQTTProtocol ignores it
        # MQTT 3.1.1: 0x80 is the failure code; an error of the attach, as on
        # the socket transport (logged by failed(), with a reconnect after backoff).
        if any(code.value >= 0x80 for code in reason_codes) and self._callback_error is None:
            self._callback_error = SubscribeRefused(topic)
