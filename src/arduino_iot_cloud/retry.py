# When to try again, and how long to wait for the other side: the library's
# timing policy, in one place.
#
# Backoff: exponential growth with full jitter.  After the n-th failed
# attempt in a row the next one waits a random time in
# [0, min(cap, first * factor**n)).  A connection that stayed up for
# `stable_ms` resets the count, so a device that loses Wi-Fi once a day
# reconnects fast, while one facing a broker that refuses it does not hammer
# it.  Without a random source (rand=None) the wait is the ceiling itself:
# the session's ThingBegin repeats (2 s doubling to 32 s) use that.  The
# caller passes the clock in and may pass its own random source, so tests
# need no sleeps.
#
# The knobs a user has: ArduinoCloudClient(reconnect_cap=) (the cap, in
# seconds) and 1.4.1's start(interval, backoff) (the first ceiling, in
# seconds, and the growth factor), see client.py.

from .compat import const

try:
    from random import random as _random
except ImportError:  # pragma: no cover - every supported runtime has random
    def _random():
        return 0.5

STABLE_MS = const(30000)
# The broker's time to answer CONNECT (and, on MicroPython, to finish the TLS
# handshake, which runs inside the first reads) with keepalive 0.
_CONNACK_NO_KEEPALIVE_MS = const(10000)
# The longest the device waits between two ThingBegin requests.
THING_RETRY_FIRST_MS = const(2000)
THING_RETRY_CAP_MS = const(32000)


class Backoff:
    def __init__(self, base_ms=1000, cap_ms=64000, stable_ms=STABLE_MS, rand=_random, factor=2):
        self.base_ms = base_ms
        self.cap_ms = cap_ms
        self.factor = factor
        self.stable_ms = stable_ms
        self.rand = rand
        self.failures = 0
        self._up_since = None

    def connected(self, now):
        self._up_since = now

    def reset(self):
        self.failures = 0
        self._up_since = None

    def ceiling(self):
        """The longest the next wait can be: min(cap, first * factor**failures)."""
        # (the exponent is bounded: past it the cap holds for every factor > 1)
        return int(min(self.cap_ms, self.base_ms * self.factor ** min(self.failures, 64)) + 0.5)

    def delay_after_failure(self, now):
        """Record a failed attempt or a dropped link; return the wait in ms."""
        if self._up_since is not None and now - self._up_since >= self.stable_ms:
            self.failures = 0
        self._up_since = None
        ceiling = self.ceiling()
        self.failures += 1
        return ceiling if self.rand is None else int(self.rand() * ceiling)


def connack_timeout_ms(keepalive):
    """How long the broker gets to answer CONNECT: 1.5 x keepalive, or 10 s
    without keepalive (as long as the link may stay silent once up)."""
    return keepalive * 1500 if keepalive else _CONNACK_NO_KEEPALIVE_MS


def silence_limit_ms(keepalive):
    """A link that brought no complete packet for this long is presumed dead
    (MQTT 3.1.1's 1.5 x keepalive); None without keepalive."""
    return keepalive * 1500 if keepalive else None


def handshake_timeout(connect_timeout, keepalive):
    """Seconds for a TCP connect and TLS handshake: connect_timeout, but no
    longer than the broker gets for its CONNACK.  A handshake stuck on a link
    that has since healed is then given up soon, not after 10 s."""
    return min(connect_timeout, connack_timeout_ms(keepalive) / 1000)
