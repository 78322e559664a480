"""A fault-injecting TCP proxy for tests: client <-> proxy <-> broker, on 127.0.0.1.

It forwards bytes unchanged (TLS passes through: the client still checks the
broker's certificate against the hostname 127.0.0.1) and, on command, injects:

* ``delay(seconds)``: every chunk, both ways, waits ``seconds`` before it is
  forwarded (order kept); ``delay(0)`` ends it;
* ``drop()``: closes every open connection cleanly (FIN on both sides);
* ``reset()``: aborts every open connection with a TCP RST (SO_LINGER 0);
* ``cut(direction, after=None)``: forwards only the first half of the next
  chunk going ``"down"`` (broker -> client) or ``"up"`` (client -> broker),
  or with ``after=n`` exactly n more bytes, then closes both sides: the peer
  sees a TLS record (and the MQTT packet in it) cut in the middle;
* ``blackhole()``: stops forwarding, both ways, without closing anything:
  bytes are read and thrown away, as on a half-open link (a NAT that forgot the
  flow, a dead access point).  New connections are black-holed too, until
  ``heal()``;
* ``refuse()``: new connections are accepted and closed at once (the broker is
  down), until ``heal()``.

``heal()`` ends delay, black-hole and refuse for new connections; connections
already black-holed stay so (like the real thing) until the client gives them
up.  Each connection has two pump threads (one per direction); they notice a
close within POLL_S and end, so the proxy leaves no threads behind after
``stop()``.  Counters (``accepted``, ``bytes_up``, ``bytes_down``) and a log of
``(time, event)`` help tests measure recovery.
"""

import socket
import struct
import threading
import time

POLL_S = 0.05
_CHUNK = 65536


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, proxy, client, upstream, blackholed):
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.blackholed = blackholed
        self.cut = {"up": False, "down": False}
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._pump, args=(client, upstream, "up"), daemon=True,
                             name="proxy-up"),
            threading.Thread(target=self._pump, args=(upstream, client, "down"), daemon=True,
                             name="proxy-down"),
        ]
        for s in (client, upstream):
            s.settimeout(POLL_S)
        for t in self.threads:
            t.start()

    def _pump(self, src, dst, direction):
        try:
            while not self.closed.is_set():
                try:
                    data = src.recv(_CHUNK)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not data:
                    break
                if self.blackholed:
                    continue  # read and thrown away: nothing goes through, nothing closes
                delay = self.proxy.delay_s
                if delay:
                    # Wait in small steps so a close ends the wait.
                    until = time.monotonic() + delay
                    while not self.closed.is_set() and time.monotonic() < until:
                        time.sleep(min(POLL_S, max(0.0, until - time.monotonic())))
                    if self.closed.is_set():
                        break
                cut = self.cut[direction]
                if cut is True:  # half of this chunk, then close
                    half = max(1, len(data) // 2)
                    self._send(dst, data[:half], direction)
                    self.proxy._note("cut %s after %d of %d bytes" % (direction, half, len(data)))
                    self.close()
                    break
                if cut:  # an int: that many more bytes, then close
                    if len(data) >= cut:
                        self._send(dst, data[:cut], direction)
                        self.proxy._note("cut %s after %d bytes (of a %d-byte chunk)" % (direction, cut, len(data)))
                        self.close()
                        break
                    self.cut[direction] = cut - len(data)
                if not self._send(dst, data, direction):
                    break
        finally:
            self.close()

    def _send(self, dst, data, direction):
        try:
            dst.sendall(data)
        except OSError:
            return False
        with self.proxy._lock:
            if direction == "up":
                self.proxy.bytes_up += len(data)
            else:
                self.proxy.bytes_down += len(data)
        return True

    def close(self, rst=False):
        with self._lock:
            if self.closed.is_set():
                return
            self.closed.set()
        for s in (self.client, self.upstream):
            try:
                if rst:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        self.proxy._forget(self)


class FaultProxy:
    def __init__(self, target_host, target_port, host="127.0.0.1"):
        if host != "127.0.0.1" or target_host != "127.0.0.1":
            raise ValueError("the fault proxy works on 127.0.0.1 only")
        self.target = (target_host, target_port)
        self.host = host
        self.port = None
        self.delay_s = 0.0
        self._blackhole_new = False
        self._refuse = False
        self._links = []
        self._lock = threading.Lock()
        self._listener = None
        self._thread = None
        self._stopping = threading.Event()
        self.accepted = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.log = []
        self._all_threads = []

    # --- life cycle --------------------------------------------------------------------
    def start(self):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((self.host, 0))
        ls.listen(16)
        ls.settimeout(POLL_S)
        self._listener = ls
        self.port = ls.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="proxy-accept")
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()
        for link in self.links():
            link.close()
        if self._thread is not None:
            self._thread.join(5)
        if self._listener is not None:
            self._listener.close()
        for t in self.threads():
            t.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def threads(self):
        """The proxy's threads that are still alive."""
        with self._lock:
            self._all_threads = [t for t in self._all_threads if t.is_alive()]
            out = list(self._all_threads)
        if self._thread is not None and self._thread.is_alive():
            out.append(self._thread)
        return out

    def links(self):
        with self._lock:
            return list(self._links)

    def _forget(self, link):
        with self._lock:
            if link in self._links:
                self._links.remove(link)

    def _note(self, event):
        self.log.append((time.monotonic(), event))

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                client, _addr = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            self.accepted += 1
            if self._refuse:
                self._note("refused a connection")
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError as e:
                self._note("upstream connect failed: %s" % e)
                client.close()
                continue
            link = _Link(self, client, upstream, self._blackhole_new)
            with self._lock:
                self._links.append(link)
                self._all_threads.extend(link.threads)
            self._note("accepted connection %d%s" % (self.accepted, " (black-holed)" if link.blackholed else ""))

    # --- faults ---------------------------------------------------------------------------
    def delay(self, seconds):
        self.delay_s = float(seconds)
        self._note("delay %.3f s" % self.delay_s)

    def drop(self):
        self._note("drop")
        for link in self.links():
            link.close(rst=False)

    def reset(self):
        self._note("reset")
        for link in self.links():
            link.close(rst=True)

    def cut(self, direction="down", after=None):
        """Cut the open links: forward half of the next chunk going `direction`,
        or with after=n, n more bytes (across chunks); then close both sides."""
        if direction not in ("up", "down"):
            raise ValueError("direction is 'up' or 'down'")
        self._note("cut %s armed%s" % (direction, "" if after is None else " after %d bytes" % after))
        for link in self.links():
            link.cut[direction] = True if after is None else max(1, int(after))

    def blackhole(self):
        self._note("blackhole")
        self._blackhole_new = True
        for link in self.links():
            link.blackholed = True

    def refuse(self):
        self._note("refuse")
        self._refuse = True

    def heal(self):
        self._note("heal")
        self.delay_s = 0.0
        self._blackhole_new = False
        self._refuse = False
