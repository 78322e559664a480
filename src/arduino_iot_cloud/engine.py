# The network engine both drivers share: one connection, its MQTT protocol,
# the device session, and reconnects.  Every method returns promptly: reads
# and writes are non-blocking, and so is the connect, taken in steps by a
# Connector (SE05x keys, which hand-shake at once, connect in one call
# bounded by connect_timeout).  Drivers decide when to call step() and how
# to wait.

from .backoff import Backoff
from .compat import getLogger
from .errors import CloudError, RemoteError, TransportError
from .mqtt.protocol import EV_CONNECTED, EV_MESSAGE, EV_SKIPPED, MQTTProtocol, connack_timeout_ms

log = getLogger("arduino_iot_cloud.engine")

# Sync mode (give_way): a step that found no input at all gives the CPU up
# once (sched_yield, a syscall that returns at once on an idle machine).  A
# tight update() loop otherwise spins against the very processes that feed it
# (the broker on a small host): in inbound runs of benchmarks/run.py on a
# loaded 2-CPU machine, sync inbound went from 8-31k to 24-32k values/s.  The
# asyncio driver waits in its loop instead.  MicroPython has no sched_yield.
try:
    from os import sched_yield as _give_way
except ImportError:
    def _give_way():
        pass

# One step's work stays bounded under a flood: at most this many reads (of
# up to 4 KB) and this many packets handled.  Whatever is left (in the
# reader's buffer, or decrypted and waiting in the TLS object, where poll()
# cannot see it) is taken by the next step, which step() asks for at once:
# the drivers run other work (user tasks, the event loop) in between.
_MAX_READS = 64
_MAX_PACKETS = 64


def handshake_timeout(connect_timeout, keepalive):
    """Seconds for a TCP connect and TLS handshake: connect_timeout, but no
    longer than the broker gets for its CONNACK (1.5 x keepalive; MicroPython's
    handshake runs inside that wait anyway).  A handshake stuck on a link that
    has since healed is then given up soon, not after 10 s."""
    return min(connect_timeout, connack_timeout_ms(keepalive) / 1000)


class Engine:
    def __init__(self, client_id, username, password, keepalive, host, port, tls, session,
                 open_connection, backoff=None, connect_timeout=10.0, open_connection_async=None,
                 start_connection=None):
        self.host = host
        self.port = port
        self.tls = tls
        self.session = session
        self.mqtt = MQTTProtocol(client_id, username, password, keepalive)
        self._open = open_connection
        self._open_async = open_connection_async
        self._start = start_connection
        self.connecting = None  # the Connector of an attempt under way
        self.backoff = backoff or Backoff()
        self.connect_timeout = connect_timeout
        self.conn = None
        self.next_attempt = 0
        self.last_error = None
        self._out = b""
        self.give_way = False  # see _give_way

    @property
    def connected(self):
        return self.conn is not None

    @property
    def handshake_timeout(self):
        """Seconds for the stepped and asyncio connects (blocking ones, for
        SE05x keys whose handshake is slow, keep connect_timeout)."""
        return handshake_timeout(self.connect_timeout, self.mqtt.keepalive)

    def due(self, now):
        return self.conn is None and self.connecting is None and now >= self.next_attempt

    def connect(self, now):
        """Start a connect attempt; returns True once the socket is open."""
        try:
            if self._start is not None:
                self.connecting = self._start(self.host, self.port, self.tls,
                                              int(self.handshake_timeout * 1000), now)
                return self._advance(now)
            conn = self._open(self.host, self.port, self.tls, self.connect_timeout)
        except RemoteError as e:
            self._failed(now, e)
            return False
        return self.connected_with(conn, now)

    def _advance(self, now):
        # One step of the connect under way; True once the socket is open.
        try:
            conn = self.connecting.step(now)
        except RemoteError as e:
            self.connecting = None
            self._failed(now, e)
            return False
        if conn is None:
            return False
        self.connecting = None
        return self.connected_with(conn, now)

    def wait_target(self):
        """(pollable, wait for writable?) that the next step waits on, or None."""
        if self.conn is not None:
            return self.conn.pollable(), False
        if self.connecting is not None:
            return self.connecting.pollable(), self.connecting.wants_write
        return None

    @property
    def connects_async(self):
        return self._open_async is not None

    async def connect_async(self, now):
        """connect() for the asyncio driver (CPython): waits on the loop, not in it."""
        try:
            conn = await self._open_async(self.host, self.port, self.tls, self.handshake_timeout)
        except RemoteError as e:
            self._failed(now, e)
            return False
        return self.connected_with(conn, now)

    def connected_with(self, conn, now):
        self.conn = conn
        log.info("connected to %s:%d, logging in", self.host, self.port)
        self.mqtt.connect(now)
        self._out = b""
        try:
            self.flush(now)
        except RemoteError as e:  # e.g. the broker refused our client certificate
            self.drop(now, e)
            return False
        return True

    def _failed(self, now, error):
        self.last_error = error
        wait = self.backoff.delay_after_failure(now)
        self.next_attempt = now + wait
        log.warning("%s; next attempt in %d ms", str(error), wait)

    def drop(self, now, error):
        """Close the connection after an error; schedule the next attempt."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self._out = b""
        self.mqtt.connection_lost(self.session.resend_after_reconnect)
        self.session.on_disconnected(error)
        self._failed(now, error)

    def close(self):
        """Disconnect politely (DISCONNECT sent if possible)."""
        if self.connecting is not None:
            self.connecting.close()
            self.connecting = None
        if self.conn is not None:
            self.mqtt.disconnect()
            try:
                self.flush(0)
            except CloudError:
                pass
            self.conn.close()
            self.conn = None
        self.mqtt.connection_lost(self.session.resend_after_reconnect)
        self.session.on_disconnected()

    def step(self, now, unix_time=None):
        """Read what is there, run timers, write what is queued.

        Returns the next deadline (ms) or None.  Errors of the link drop the
        connection and schedule a reconnect; they are not raised.
        """
        if self.conn is None and (self.connecting is None or not self._advance(now)):
            return self.next_attempt if self.connecting is None else self.connecting.deadline
        try:
            more = self._read(now)
            deadline = self.mqtt.poll(now)
            if self.mqtt.connected:
                d = self.session.poll(now, unix_time)
                if d is not None and (deadline is None or d < deadline):
                    deadline = d
            self.flush(now)
            return now if more and self.conn is not None else deadline
        except RemoteError as e:
            self.drop(now, e)
        except MemoryError:
            # A board out of heap (a large message, fragmentation): dropping the
            # link frees its buffers; values stay queued and the device
            # reconnects, instead of the error ending the user's main loop.
            self.drop(now, TransportError("out of memory while handling the connection"))
        return self.next_attempt

    def _read(self, now):
        # True when the step stopped at its bounds with input left.
        mqtt = self.mqtt
        first = mqtt.packets_in
        reads = 0
        while True:
            if self.conn is None:  # closed by a callback
                return False
            budget = _MAX_PACKETS - (mqtt.packets_in - first)
            if budget <= 0:
                return True
            if mqtt.backlog:
                data = b""  # packets already buffered come first
            elif reads < _MAX_READS:
                data = self.conn.recv()
                if data is None:
                    if not reads and self.give_way:
                        _give_way()
                    return False
                reads += 1
            else:
                return True
            for event in mqtt.receive_data(data, now, budget):
                kind = event[0]
                if kind == EV_MESSAGE:
                    self.session.on_message(event[1], event[2], now)
                elif kind == EV_CONNECTED:
                    log.info("logged in to the broker")
                    self.backoff.connected(now)
                    self.last_error = None
                    self.session.on_connected(self.mqtt, now)
                elif kind == EV_SKIPPED:  # the link stays up; the message is lost
                    log.warning("skipped a message of %d bytes on %s: larger than the maximum of %d",
                                event[2], event[1], mqtt.max_packet_size)

    def flush(self, now):
        """Send queued bytes; what the socket does not take now stays queued."""
        out = self._out
        new = self.mqtt.data_to_send()
        if new:
            out = bytes(out) + bytes(new) if out else new
        if not out or self.conn is None:
            self._out = out
            return
        n = self.conn.send(out)
        if n:
            self.mqtt.sent(now)
        self._out = out[n:] if n < len(out) else b""

    def pending_output(self):
        return bool(self._out)
