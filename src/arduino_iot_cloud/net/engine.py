# The engine contract: what both drivers (client.py) call, whichever engine
# carries the MQTT (socket_engine.SocketEngine, our own protocol over a
# non-blocking socket; paho_engine.PahoEngine, paho-mqtt on CPython).
#
# An engine owns one connection attempt or link at a time and feeds the
# DeviceSession.  Every method returns promptly; the driver decides when to
# call step() and how to wait (net/wait.py):
#   due(now)            time for a new connect attempt?
#   connect(now, address=None)   start one (address: looked up already)
#   step(now, unix_time)         read, run timers, write; the next deadline
#   wait_target()       (pollable, writable?) to wait on before the next step
#   flush(now)          write what the session just queued
#   pending_output()    bytes the socket has not taken yet?
#   drop(now, error)    give the link up after an error, back off
#   close()             disconnect politely (stop())
# and keeps last_error (the last connection error, None once logged in),
# backoff (retry.Backoff) and connected.
#
# This base class holds what the two have in common: when to try again
# (the Backoff), what a failure and a drop do, and the shape of a step.
# A subclass supplies the connection itself: _connect_step, _exchange,
# _close_link, _abandon_connect, flush, wait_target, pending_output, and
# logged_in (the broker accepted the login on the current link).

from ..compat import getLogger
from ..errors import ConnectRefused, RemoteError, TransportError
from ..retry import Backoff, handshake_timeout

log = getLogger("arduino_iot_cloud.engine")


class Engine:
    connects_async = False  # True: the asyncio driver awaits connect_async() (a name lookup on the loop)
    logged_in = False

    def __init__(self, host, port, tls, session, keepalive, backoff=None, connect_timeout=10.0):
        self.host = host
        self.port = port
        self.tls = tls
        self.session = session
        self.keepalive = keepalive
        self.backoff = backoff or Backoff()
        self.connect_timeout = connect_timeout
        self.conn = None        # the open link
        self.connecting = None  # the connect attempt under way
        self.next_attempt = 0
        self.last_error = None

    @property
    def connected(self):
        return self.conn is not None

    @property
    def handshake_timeout(self):
        """Seconds a TCP connect and TLS handshake may take (retry.py)."""
        return handshake_timeout(self.connect_timeout, self.keepalive)

    def due(self, now):
        return self.conn is None and self.connecting is None and now >= self.next_attempt

    def step(self, now, unix_time=None):
        """Read what is there, run timers, write what is queued.

        Returns the next deadline (ms) or None.  Errors of the link drop the
        connection and schedule a reconnect; they are not raised.
        """
        if self.conn is None:
            wait = self._connect_step(now)
            if self.conn is None:
                return wait
        try:
            deadline = self._exchange(now)
            if self.logged_in:
                d = self.session.poll(now, unix_time)
                if d is not None and (deadline is None or d < deadline):
                    deadline = d
            self.flush(now)
            return deadline
        except RemoteError as e:
            self.drop(now, e)
        except MemoryError:
            # A board out of heap (a large message, fragmentation): dropping the
            # link frees its buffers; values stay queued and the device
            # reconnects, instead of the error ending the user's main loop.
            self.drop(now, TransportError("out of memory while handling the connection"))
        return self.next_attempt

    def drop(self, now, error):
        """Close the link after an error; schedule the next attempt."""
        self._close_link(polite=False)
        self.session.on_disconnected(error)
        self.failed(now, error)

    def close(self):
        """Disconnect politely (DISCONNECT sent if possible)."""
        if self.connecting is not None:
            self._abandon_connect()
            self.connecting = None
        self._close_link(polite=True)
        self.session.on_disconnected()

    def failed(self, now, error):
        """An attempt failed or a link was lost: wait before the next one."""
        self.last_error = error
        wait = self.backoff.delay_after_failure(now)
        self.next_attempt = now + wait
        # A refused login needs the user (a wrong password); a lost link does not.
        report = log.error if isinstance(error, ConnectRefused) else log.warning
        report("%s; next attempt in %d ms", str(error), wait)

    def _skipped(self, topic, size, limit):
        """A message over the packet limit was dropped as it came; the link stays up."""
        log.warning("skipped a message of %d bytes on %s: larger than the maximum of %d", size, topic, limit)

    def _logged_in(self, link, now):
        log.info("logged in to the broker")
        self.backoff.connected(now)
        self.last_error = None
        self.session.on_connected(link, now)
