# The socket engine: our own MQTT protocol (mqtt/protocol.py) over one
# non-blocking TLS connection, opened in steps by connector.start_connection.
# The contract, the retries and the shape of a step are engine.py's.

from ..errors import CloudError, RemoteError
from ..mqtt.protocol import EV_CONNECTED, EV_MESSAGE, EV_SKIPPED, MQTTProtocol
from .connector import start_connection
from .engine import Engine, log

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
MAX_READS = 64
MAX_PACKETS = 64


class SocketEngine(Engine):
    def __init__(self, client_id, username, password, keepalive, host, port, tls, session,
                 backoff=None, connect_timeout=10.0, lookup_on_loop=False, dial=start_connection):
        Engine.__init__(self, host, port, tls, session, keepalive, backoff, connect_timeout)
        self.dial = dial  # connector.start_connection; tests give a scripted one
        self.mqtt = MQTTProtocol(client_id, username, password, keepalive)
        # The asyncio driver on CPython looks the name up on the loop (an SE05x
        # connect blocks in any case).
        self.connects_async = lookup_on_loop and tls.hardware != "se05x"
        self._out = b""
        self.give_way = False  # see _give_way

    @property
    def logged_in(self):
        return self.mqtt.connected

    def connect(self, now, address=None):
        """Start a connect attempt; returns True once the socket is open."""
        try:
            self.connecting = self.dial(self.host, self.port, self.tls,
                                               int(self.handshake_timeout * 1000), now, address)
        except RemoteError as e:
            self.failed(now, e)
            return False
        return self._advance(now)

    async def connect_async(self, now):
        """connect() for the asyncio driver on CPython: the name lookup waits on the loop."""
        from .wait import resolve_async

        try:
            address = await resolve_async(self.host, self.port)
        except RemoteError as e:
            self.failed(now, e)
            return False
        return self.connect(now, address)

    def _connect_step(self, now):
        if self.connecting is None:
            return self.next_attempt
        if self._advance(now):
            return None
        return self.next_attempt if self.connecting is None else self.connecting.deadline

    def _advance(self, now):
        # One step of the connect under way; True once the link is open.
        try:
            conn = self.connecting.step(now)
        except RemoteError as e:
            self.connecting = None
            self.failed(now, e)
            return False
        if conn is None:
            return False
        self.connecting = None
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

    def wait_target(self):
        if self.conn is not None:
            return self.conn.pollable(), False
        if self.connecting is not None:
            return self.connecting.pollable(), self.connecting.wants_write
        return None

    def _abandon_connect(self):
        self.connecting.close()

    def _close_link(self, polite):
        if self.conn is not None:
            if polite:
                self.mqtt.disconnect()
                try:
                    self.flush(0)
                except CloudError:
                    pass
            self.conn.close()
            self.conn = None
        self._out = b""
        self.mqtt.connection_lost(self.session.resend_after_reconnect)

    def _exchange(self, now):
        more = self._read(now)
        deadline = self.mqtt.poll(now)
        return now if more and self.conn is not None else deadline

    def _read(self, now):
        # True when the step stopped at its bounds with input left.
        mqtt = self.mqtt
        first = mqtt.packets_in
        reads = 0
        while True:
            if self.conn is None:  # closed by a callback
                return False
            budget = MAX_PACKETS - (mqtt.packets_in - first)
            if budget <= 0:
                return True
            if mqtt.backlog:
                data = b""  # packets already buffered come first
            elif reads < MAX_READS:
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
                    self._logged_in(mqtt, now)
                elif kind == EV_SKIPPED:  # the link stays up; the message is lost
                    self._skipped(event[1], event[2], mqtt.max_packet_size)

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
