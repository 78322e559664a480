# Reconnect backoff: exponential growth, cap, full jitter, reset after a
# stable period, and the engine backing off after a refused login.
# Plain functions against a fake clock (numbers passed in) and a fake random
# source, so they run under pytest and MicroPython (tests/mpy_run.py) alike.

from arduino_iot_cloud.net.connector import Opened
from arduino_iot_cloud.net.socket_engine import SocketEngine
from arduino_iot_cloud.retry import Backoff
from arduino_iot_cloud.errors import ConnectRefused, TransportError
from arduino_iot_cloud.records import Property, Registry
from arduino_iot_cloud.session import DeviceSession

DEV = "d3f0b2c8-0000-4000-8000-00000000b0ff"
SECRET = "s3cr3t-Pa55w0rd-never-logged"


def _fixed(x):
    return lambda: x


def _delays(b, n, now=0):
    return [b.delay_after_failure(now) for _ in range(n)]


def test_growth_doubles_from_base():
    # With rand() = 0.5 every delay is half its ceiling: 1, 2, 4, ... s.
    b = Backoff(rand=_fixed(0.5))
    assert _delays(b, 7) == [500, 1000, 2000, 4000, 8000, 16000, 32000]


def test_cap_holds_forever():
    b = Backoff(rand=_fixed(0.5))
    d = _delays(b, 200)
    assert d[6] == 32000
    for x in d[7:]:
        assert x == 32000, d  # cap 64 s, times 0.5
    assert b.failures == 200


def test_custom_base_and_cap():
    b = Backoff(base_ms=250, cap_ms=3000, rand=_fixed(0.5))
    assert _delays(b, 6) == [125, 250, 500, 1000, 1500, 1500]


def test_full_jitter_bounds():
    # rand() in [0, 1): delay in [0, ceiling); 0 and just below the ceiling.
    lo = Backoff(rand=_fixed(0.0))
    assert _delays(lo, 10) == [0] * 10
    hi = Backoff(rand=_fixed(0.9999999))
    assert _delays(hi, 8) == [999, 1999, 3999, 7999, 15999, 31999, 63999, 63999]


def test_full_jitter_spreads_over_the_whole_range():
    # A deterministic pseudo-random source (LCG): delays cover [0, ceiling).
    state = [12345]

    def lcg():
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return state[0] / 2147483648.0

    samples = []
    for _ in range(400):
        b = Backoff(cap_ms=8000, rand=lcg)
        b.failures = 3  # ceiling 8000
        samples.append(b.delay_after_failure(0))
    for x in samples:
        assert 0 <= x < 8000, x
    assert min(samples) < 1000, min(samples)
    assert max(samples) > 7000, max(samples)
    # Roughly uniform: about half below the middle.
    below = len([x for x in samples if x < 4000])
    assert 140 < below < 260, below


def test_default_random_stays_in_range():
    b = Backoff(cap_ms=4000)
    for i in range(50):
        ceiling = min(4000, 1000 << min(i, 20))
        d = b.delay_after_failure(0)
        assert 0 <= d < ceiling, (i, d)


def test_reset_after_30_s_stable():
    b = Backoff(rand=_fixed(0.5))
    _delays(b, 5)  # next ceiling 32 s
    b.connected(100000)
    # Up for 30 s: the link was stable, so the next failure starts over.
    assert b.delay_after_failure(130000) == 500
    assert b.delay_after_failure(130001) == 1000


def test_no_reset_when_link_was_short_lived():
    b = Backoff(rand=_fixed(0.5))
    _delays(b, 5)
    b.connected(100000)
    assert b.delay_after_failure(129999) == 16000  # 29.999 s: not stable, keep growing
    b.connected(200000)
    assert b.delay_after_failure(200500) == 32000


def test_no_reset_without_a_connection():
    # Failing attempts never call connected(): time passing alone resets nothing.
    b = Backoff(rand=_fixed(0.5))
    _delays(b, 3)
    assert b.delay_after_failure(10 ** 9) == 4000


def test_connected_then_drop_counts_once():
    # A stable period is measured from the last connected() only.
    b = Backoff(rand=_fixed(0.5))
    b.connected(0)
    assert b.delay_after_failure(60000) == 500
    assert b.delay_after_failure(60000 + 10 ** 6) == 1000  # no connected() in between


# --- the socket engine, with a scripted connect -------------------------------------------------


class FakeConn:
    """A connection whose broker side is a script of byte chunks."""

    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.sent = bytearray()
        self.closed = False
        self.dead = False  # True: every write fails, as on a link that just died

    def recv(self):
        if self.closed:
            raise TransportError("closed")
        if self.chunks:
            c = self.chunks.pop(0)
            if c is None:
                raise TransportError("connection closed by the broker")
            return c
        return None

    def send(self, data):
        if self.dead:
            raise TransportError("connection lost: EOF occurred in violation of protocol")
        self.sent.extend(data)
        return len(data)

    def close(self):
        self.closed = True

    def pollable(self):
        return None


class Opener:
    def __init__(self, *scripts):
        self.scripts = list(scripts)
        self.conns = []
        self.calls = 0

    def __call__(self, host, port, tls, timeout_ms, now, address=None):
        self.calls += 1
        script = self.scripts.pop(0) if self.scripts else []
        if script == "refuse-tcp":
            raise TransportError("cannot connect to %s:%d: connection refused" % (host, port))
        conn = FakeConn(script)
        self.conns.append(conn)
        return Opened(conn, now)


CONNACK_OK = b"\x20\x02\x00\x00"


def _connack(code):
    return bytes((0x20, 2, 0, code))


def _engine(opener, rand=_fixed(0.5), cap_ms=64000):
    reg = Registry()
    reg.add(Property("x", 1))
    session = DeviceSession(DEV, reg, None, "test")
    return SocketEngine(DEV, DEV, SECRET, 10, "127.0.0.1", 1, None, session,
                        Backoff(cap_ms=cap_ms, rand=rand), dial=opener)


def _attempt(e, now):
    assert e.due(now)
    if e.connect(now):
        e.step(now)


def test_refused_login_backs_off():
    opener = Opener(*[[_connack(5)] for _ in range(8)])
    e = _engine(opener)
    now = 0
    waits = []
    for _ in range(8):
        _attempt(e, now)
        assert not e.connected
        assert isinstance(e.last_error, ConnectRefused)
        assert e.last_error.code == 5
        waits.append(e.next_attempt - now)
        assert not e.due(e.next_attempt - 1)
        now = e.next_attempt
    assert waits == [500, 1000, 2000, 4000, 8000, 16000, 32000, 32000], waits
    assert opener.calls == 8
    # Each attempt really logged in, and every connection was closed.
    for c in opener.conns:
        assert c.sent[:1] == b"\x10"
        assert c.closed


def test_refused_login_error_is_readable_and_secret_free():
    e = _engine(Opener([_connack(5)]))
    _attempt(e, 0)
    msg = str(e.last_error)
    assert "not authorized" in msg and "5" in msg, msg
    assert SECRET not in msg
    e2 = _engine(Opener([_connack(4)]))
    _attempt(e2, 0)
    assert "bad username or password" in str(e2.last_error)
    assert SECRET not in str(e2.last_error)


def test_tcp_failure_backs_off_too():
    e = _engine(Opener("refuse-tcp", "refuse-tcp", "refuse-tcp"))
    now = 0
    waits = []
    for _ in range(3):
        assert e.due(now)
        assert e.connect(now) is False
        assert isinstance(e.last_error, TransportError)
        waits.append(e.next_attempt - now)
        now = e.next_attempt
    assert waits == [500, 1000, 2000]


def test_not_due_before_the_delay():
    e = _engine(Opener([_connack(5)], [_connack(5)]), rand=_fixed(0.9))
    _attempt(e, 1000)
    at = e.next_attempt
    assert at == 1000 + 900
    assert not e.due(at - 1)
    assert e.step(at - 1) == at  # step with no connection returns the next attempt time
    assert e.due(at)


def test_successful_login_clears_error_and_stable_link_resets_backoff():
    opener = Opener([_connack(5)], [_connack(5)], [_connack(5)], [CONNACK_OK], [CONNACK_OK])
    e = _engine(opener)
    now = 0
    for _ in range(3):
        _attempt(e, now)
        now = e.next_attempt
    assert e.backoff.failures == 3
    _attempt(e, now)  # CONNACK 0
    assert e.connected and e.last_error is None
    # The link stays up 30 s, then drops.
    e.drop(now + 30000, TransportError("cut"))
    assert e.next_attempt - (now + 30000) == 500  # back to the base delay
    now = e.next_attempt
    _attempt(e, now)
    assert e.connected
    e.drop(now + 5000, TransportError("cut again"))
    assert e.next_attempt - (now + 5000) == 1000  # a short-lived link keeps growing


def test_refused_then_accepted_after_cap():
    # Many refusals, then the broker lets the device in: delays stay at the cap
    # (never overflow) and the first CONNACK 0 brings the device up.
    scripts = [[_connack(5)] for _ in range(60)] + [[CONNACK_OK]]
    e = _engine(Opener(*scripts), cap_ms=4000)
    now = 0
    for _ in range(60):
        _attempt(e, now)
        assert e.next_attempt - now <= 2000
        now = e.next_attempt
    _attempt(e, now)
    assert e.connected


def test_client_reconnect_cap_reaches_backoff():
    from arduino_iot_cloud.client import ArduinoCloudClient

    c = ArduinoCloudClient(DEV, password=SECRET, server="127.0.0.1", port=1, reconnect_cap=5)
    assert c.engine.backoff.cap_ms == 5000
    assert c.engine.backoff.base_ms == 1000


class DyingConn(FakeConn):
    """Accepts the TCP/TLS connection, then fails the first write (as when the
    broker rejects a client certificate after a TLS 1.3 handshake)."""

    def __init__(self, chunks):
        FakeConn.__init__(self, chunks)
        self.dead = True


def test_link_dying_on_the_login_write_backs_off_not_raises():
    e = _engine(lambda host, port, tls, timeout_ms, now, address=None: Opened(DyingConn([]), now))
    assert e.connect(0) is False
    assert not e.connected
    assert isinstance(e.last_error, TransportError)
    assert e.next_attempt == 500
    assert e.connect(500) is False
    assert e.next_attempt == 500 + 1000


def test_client_step_survives_a_link_dying_between_step_and_publish():
    # A value changed by a user callback is published at the end of _step();
    # if the socket died in between, the client drops the link and goes on.
    from arduino_iot_cloud.client import ArduinoCloudClient

    c = ArduinoCloudClient(DEV, password=SECRET, server="127.0.0.1", port=1, sync_mode=True)
    c.register("x", value=1)
    conn = FakeConn([CONNACK_OK])
    c.engine.dial = lambda host, port, tls, timeout_ms, now, address=None: Opened(conn, now)
    c.engine.connect(0)
    c.engine.step(0)  # CONNACK: the session subscribes and asks for its thing
    s = c.session
    thing = "7a1c2e44-0000-4000-8000-0000000000aa"
    from arduino_iot_cloud import senml
    s.on_message(s.device_in, senml.encode((("thing_id", thing),)), 1)
    s.on_message("/a/t/%s/shadow/i" % thing, senml.encode((("x", 1),)), 2)
    assert s.ready
    conn.dead = True
    c.registry.get("x").set(5)
    c._step(10)  # must not raise
    assert not c.engine.connected and isinstance(c.engine.last_error, TransportError)


def test_out_of_memory_on_the_link_drops_it_and_reconnects():
    # A board that runs out of heap while handling input must not end the
    # user's loop: the link is dropped (its buffers freed) and retried.
    class HungryConn(FakeConn):
        def recv(self):
            if self.chunks:
                return FakeConn.recv(self)
            raise MemoryError("memory allocation failed, allocating 65536 bytes")

    opener = Opener([CONNACK_OK])
    e = _engine(opener)
    assert e.connect(0)
    hungry = HungryConn([CONNACK_OK])
    e.conn = hungry
    e.step(1)
    assert not e.connected and hungry.closed
    assert isinstance(e.last_error, TransportError) and "out of memory" in str(e.last_error)
    assert e.next_attempt > 1


# --- 1.4.1's start(interval, backoff): the first bound and the growth ----------------------


def _refusing_client():
    from arduino_iot_cloud.client import ArduinoCloudClient

    c = ArduinoCloudClient(DEV, password=SECRET, server="127.0.0.1", port=1, sync_mode=True)
    c.engine.dial = Opener(*["refuse-tcp"] * 6)
    c.engine.backoff.rand = _fixed(0.5)
    return c


def _waits(c, n):
    waits, now = [], 0
    for _ in range(n):
        assert c.engine.due(now)
        c.engine.connect(now)
        waits.append(c.engine.next_attempt - now)
        now = c.engine.next_attempt
    return waits


def test_start_interval_and_backoff_shape_the_reconnects():
    c = _refusing_client()
    c._retry_knobs(0.2, 3)  # what start(interval=0.2, backoff=3) does before anything else
    assert _waits(c, 5) == [100, 300, 900, 2700, 8100]  # half of 0.2 s x 3**n (rand 0.5)
    c = _refusing_client()
    c._retry_knobs(1.0, 1.2)  # 1.4.1's defaults, given explicitly
    assert _waits(c, 4) == [500, 600, 720, 864]


def test_start_without_interval_and_backoff_keeps_the_defaults():
    c = _refusing_client()
    c._retry_knobs(None, None)
    assert _waits(c, 4) == [500, 1000, 2000, 4000]


def test_start_refuses_bad_interval_and_backoff_before_any_io():
    from arduino_iot_cloud.errors import ConfigError

    for interval, backoff in ((0, None), (-1, None), ("1", None), (True, None), (None, 0.5), (None, "2")):
        c = _refusing_client()
        try:
            c.start(interval, backoff)
        except ConfigError as e:
            assert ("interval" if interval is not None else "backoff") in str(e), str(e)
        else:
            raise AssertionError("start(%r, %r) was accepted" % (interval, backoff))
        assert c.engine.dial.calls == 0
