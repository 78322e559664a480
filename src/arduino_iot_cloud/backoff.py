# Reconnect delays: exponential backoff with full jitter.
#
# After the n-th failed attempt in a row the next one waits a random time in
# [0, min(cap, base * 2**n)).  A connection that stayed up for `stable_ms`
# resets the count, so a device that loses Wi-Fi once a day reconnects fast,
# while one facing a broker that refuses it does not hammer it.  The caller
# passes the clock in and may pass its own random source, so tests need no
# sleeps.

from .compat import const

try:
    from random import random as _random
except ImportError:  # pragma: no cover - every supported runtime has random
    def _random():
        return 0.5

STABLE_MS = const(30000)


class Backoff:
    def __init__(self, base_ms=1000, cap_ms=64000, stable_ms=STABLE_MS, rand=_random):
        self.base_ms = base_ms
        self.cap_ms = cap_ms
        self.stable_ms = stable_ms
        self.rand = rand
        self.failures = 0
        self._up_since = None

    def connected(self, now):
        self._up_since = now

    def delay_after_failure(self, now):
        """Record a failed attempt or a dropped link; return the wait in ms."""
        if self._up_since is not None and now - self._up_since >= self.stable_ms:
            self.failures = 0
        self._up_since = None
        ceiling = min(self.cap_ms, self.base_ms << min(self.failures, 20))
        self.failures += 1
        return int(self.rand() * ceiling)
