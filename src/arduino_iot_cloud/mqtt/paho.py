# paho-mqtt 2.x as the MQTT transport (CPython only): transport="paho".
#
# PahoEngine has the public surface of engine.Engine (due, connect, step,
# flush, close, drop, pending_output, conn, connected, last_error, backoff)
# and feeds the same DeviceSession, so both drivers run it unchanged.
#
# paho runs WITHOUT its background thread (no loop_start): step() drives it
# with loop_read / loop_misc / loop_write on paho's own socket, so on_connect
# and on_message (and through them the user's on_write callbacks) run inside
# step(), in the caller's thread.  Reconnects are ours too: a lost link or a
# refused login is reported to our Backoff, never to paho's reconnect_delay_set.
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

import ssl
import threading
from typing import Any, Optional, Set, Tuple

from ..backoff import Backoff
from ..compat import getLogger
from ..errors import CloudError, ConfigError, ConnectRefused, RemoteError, TransportError
from ..session import DeviceSession
from ..tls import TLSConfig
from ..transport import tls_error

try:
    import paho.mqtt.client as mqtt
except ImportError:  # an optional extra
    mqtt = None

log = getLogger("arduino_iot_cloud.paho")

EXTRA_HINT = "pip install arduino-iot-cloud[paho]"

# At most this many loop_read calls per step, so one step stays bounded.
_MAX_READS = 64
# paho's keepalive timers run in loop_misc(), so step() asks to be called
# every keepalive/20 (50 ms to 1 s): paho then finds a half-open link within
# 2 x keepalive plus that (ours: 1.5 x keepalive, from exact deadlines).
_HOUSEKEEPING_MIN_MS = 50
_HOUSEKEEPING_MAX_MS = 1000
# How long the broker gets to answer CONNECT (as MQTTProtocol does).
_CONNACK_TIMEOUT_MS = 10000
# How often step() looks whether a connect under way has finished.
_CONNECT_POLL_MS = 10

# paho 2.x reports an MQTT 3.1.1 CONNACK refusal as an MQTT 5 reason code;
# ConnectRefused carries the 3.1.1 return code the broker sent.
_V311_CODE = {132: 1, 133: 2, 136: 3, 134: 4, 135: 5}


def _require_paho() -> None:
    if mqtt is None:
        raise ConfigError("transport='paho' needs paho-mqtt: %s" % EXTRA_HINT)
    if not hasattr(mqtt, "CallbackAPIVersion"):
        raise ConfigError("transport='paho' needs paho-mqtt 2.x (found an older one): %s" % EXTRA_HINT)


class _NamedContext(ssl.SSLContext):
    """An SSLContext that checks the broker's certificate against a fixed name
    (ssl_params["server_hostname"]), not the host paho connects to."""

    server_name = ""

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        kwargs["server_hostname"] = self.server_name
        return super().wrap_socket(sock, *args, **kwargs)


def ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """The SSLContext paho gets: the same checks and credentials as TLSConfig.wrap()."""
    if tls.hardware == "pkcs11":
        raise ConfigError("transport='paho' cannot use a key held in a PKCS#11 token: paho-mqtt opens TLS "
                          "with Python's ssl module, which cannot take a key from an OpenSSL engine "
                          "(M2Crypto); use transport='socket'")
    if tls.hardware is not None:
        raise ConfigError("transport='paho' cannot use %s keys: they need MicroPython's %s module"
                          % (tls.hardware, tls.hardware))
    if tls.server_hostname:
        ctx: ssl.SSLContext = _NamedContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.server_name = tls.server_hostname  # type: ignore[attr-defined]
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        tls.configure(ctx)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError("cannot set up TLS for paho: %s" % e)
    return ctx


class _Conn:
    """What the drivers wait on: paho's socket, for select/poll and the event loop."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock

    def pollable(self) -> int:
        return self.sock.fileno()


class _Link:
    """The session's MQTT link, over paho's publish/subscribe/unsubscribe."""

    def __init__(self, engine: "PahoEngine") -> None:
        self._engine = engine

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self._engine.client.subscribe(topic, qos)

    def unsubscribe(self, topic: str) -> None:
        self._engine.client.unsubscribe(topic)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self._engine.client.publish(topic, payload, qos)
        if qos and info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            # paho keeps it and sends it again after a reconnect until PUBACK.
            self._engine.unacked.add(info.mid)

    def can_publish(self) -> bool:
        engine = self._engine
        return engine.logged_in and len(engine.unacked) < engine.max_inflight


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


class PahoEngine:
    """engine.Engine's counterpart with paho-mqtt doing the MQTT."""

    connects_async = False  # connect() starts a _ConnectAttempt; step() picks up its result

    def __init__(self, client_id: str, username: Optional[str], password: Optional[str], keepalive: int,
                 host: str, port: int, tls: TLSConfig, session: DeviceSession,
                 backoff: Optional[Backoff] = None, connect_timeout: float = 10.0,
                 max_inflight: int = 32) -> None:
        _require_paho()
        self.host = host
        self.port = port
        self.tls = tls
        self.session = session
        self.keepalive = keepalive
        self.backoff = backoff or Backoff()
        self.max_inflight = max_inflight
        period = keepalive * 50 if keepalive else _HOUSEKEEPING_MAX_MS
        self._housekeeping_ms = max(_HOUSEKEEPING_MIN_MS, min(_HOUSEKEEPING_MAX_MS, period))
        self.conn: Optional[_Conn] = None
        self.connecting: Optional[_ConnectAttempt] = None  # the attempt under way
        self._abandoned: Optional[_ConnectAttempt] = None  # one close() left to finish on its own
        self.next_attempt = 0
        self.last_error: Optional[CloudError] = None
        self.logged_in = False         # CONNACK 0 seen on the current connection
        self.unacked: Set[int] = set()  # mids of QoS 1 publishes awaiting PUBACK
        self._link = _Link(self)
        self._now = 0
        self._connect_at = 0
        self._refused: Optional[ConnectRefused] = None
        self._lost: Optional[str] = None  # why paho closed the socket

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                        protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        if password is not None:
            c.username_pw_set(username, password)
        c.tls_set_context(ssl_context(tls))
        c.connect_timeout = connect_timeout  # TCP connect, and TLS handshake
        c.max_inflight_messages_set(0)  # unlimited in paho; can_publish() is the limit
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        self.client = c

    # --- the Engine surface ------------------------------------------------------------
    @property
    def connect_timeout(self) -> float:
        return self.client.connect_timeout

    @connect_timeout.setter
    def connect_timeout(self, seconds: float) -> None:
        # paho accepts a new value only before the first connect.
        self.client.connect_timeout = seconds

    @property
    def connected(self) -> bool:
        return self.conn is not None

    def due(self, now: int) -> bool:
        if self._abandoned is not None and self._abandoned.running():
            return False  # that thread still holds the paho client
        return self.conn is None and self.connecting is None and now >= self.next_attempt

    def wait_target(self) -> Optional[Tuple[int, bool]]:
        """(pollable, wait for writable?) that the next step waits on, or None."""
        return (self.conn.pollable(), False) if self.conn is not None else None

    def connect(self, now: int) -> bool:
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
            self._failed(now, tls_error(error, self.host, self.port)
                         or TransportError("cannot connect to %s:%d: %s" % (self.host, self.port, error)))
            return False
        if error is not None:  # e.g. a host name paho cannot use
            self._failed(now, TransportError("cannot connect to %s:%d: %s" % (self.host, self.port, error)))
            return False
        sock = self.client.socket()
        if sock is None:
            self._failed(now, TransportError("cannot connect to %s:%d: %s"
                                             % (self.host, self.port, self._lost or "connection closed")))
            return False
        self.conn = _Conn(sock)
        self._connect_at = now
        log.info("connected to %s:%d (paho), logging in", self.host, self.port)
        return True

    def step(self, now: int, unix_time: Optional[int] = None) -> Optional[int]:
        """Read, run paho's and the session's timers, write.  Returns the next
        deadline (ms).  Link errors drop the connection and schedule a reconnect."""
        self._now = now
        if self.conn is None:
            if self.connecting is None:
                return self.next_attempt
            if not (self.connecting.finished and self._connect_finished(now)):
                return now + _CONNECT_POLL_MS if self.connecting is not None else self.next_attempt
        try:
            more = self._read()
            self.client.loop_misc()  # keepalive: PINGREQ, or close a dead link
            self._check_link()
            deadline = now if more else now + self._housekeeping_ms
            if self.logged_in:
                d = self.session.poll(now, unix_time)
                if d is not None and d < deadline:
                    deadline = d
            elif now - self._connect_at >= _CONNACK_TIMEOUT_MS:
                raise TransportError("no answer to CONNECT within %d s" % (_CONNACK_TIMEOUT_MS // 1000))
            self.flush(now)
            self._check_link()
            return deadline
        except RemoteError as e:
            self.drop(now, e)
        return self.next_attempt

    def flush(self, now: int) -> None:
        """Send what paho has queued; what the socket does not take now stays queued."""
        if self.conn is not None and self.client.want_write():
            self.client.loop_write()

    def pending_output(self) -> bool:
        return self.conn is not None and self.client.want_write()

    def drop(self, now: int, error: RemoteError) -> None:
        """Close the connection after an error; schedule the next attempt."""
        self._close_socket(error)
        self._failed(now, error)

    def close(self) -> None:
        """Disconnect politely (DISCONNECT sent if possible)."""
        if self.connecting is not None:
            if self.connecting.abandon():
                self._abandoned = self.connecting
            else:
                _close_socket_of(self.client)
            self.connecting = None
        self._close_socket()

    # --- internals ----------------------------------------------------------------------
    def _read(self) -> bool:
        """Let paho read and handle packets; True if TLS still holds unread bytes."""
        for _ in range(_MAX_READS):
            rc = self.client.loop_read()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                if rc != mqtt.MQTT_ERR_NO_CONN:
                    self._lost = mqtt.error_string(rc)
                return False
            sock = self.client.socket()
            # Bytes already decrypted wait in the TLS object, where poll cannot see them.
            if sock is None or not sock.pending():
                return False
        return True

    def _check_link(self) -> None:
        if self._refused is not None:
            raise self._refused
        if self.client.socket() is None:
            raise TransportError("connection lost: %s" % (self._lost or "closed"))

    def _close_socket(self, error: Optional[RemoteError] = None) -> None:
        if self.conn is not None:
            self.conn = None
            if self.client.socket() is not None:
                # paho's own way out: DISCONNECT, then it closes the socket.
                self.client.disconnect()
                self.client.loop_write()
            _close_socket_of(self.client)  # if the DISCONNECT could not be written now
        self.logged_in = False
        self.session.on_disconnected(error)

    def _failed(self, now: int, error: CloudError) -> None:
        self.last_error = error
        wait = self.backoff.delay_after_failure(now)
        self.next_attempt = now + wait
        if isinstance(error, ConnectRefused):
            log.error("%s; next attempt in %d ms", str(error), wait)
        else:
            log.warning("%s; next attempt in %d ms", str(error), wait)

    # --- paho callbacks (run inside step(), in the caller's thread) -----------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._refused = ConnectRefused(_V311_CODE.get(reason_code.value, reason_code.value))
            return
        log.info("logged in to the broker (paho)")
        self.logged_in = True
        self.backoff.connected(self._now)
        self.last_error = None
        self.session.on_connected(self._link, self._now)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._lost = str(reason_code)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            log.error("ignoring a message whose topic is not UTF-8")
            return
        self.session.on_message(topic, msg.payload, self._now)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        self.unacked.discard(mid)
