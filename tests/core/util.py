# Helpers for the core tests, which run under both pytest and MicroPython
# (tests/mpy_run.py), so no pytest imports here.

import binascii


def unhex(s):
    """Bytes from hex text; spaces are ignored: unhex("81 A2 00")."""
    return binascii.unhexlify(s.replace(" ", ""))


def tohex(b):
    """Lower-case hex text of bytes-like b, no separators."""
    return binascii.hexlify(bytes(b)).decode()


def raises(exc_type, fn, *args, **kwargs):
    """Call fn(*args, **kwargs); return the exc_type it raised, fail otherwise."""
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    except Exception as e:  # noqa: BLE001 - a wrong exception type is the failure
        raise AssertionError("expected %s, got %s: %s" % (exc_type.__name__, type(e).__name__, e))
    raise AssertionError("expected %s, nothing raised" % exc_type.__name__)


def is_nan(x):
    return isinstance(x, float) and x != x


class Link:
    """The MQTT side of a DeviceSession, recorded: what it subscribed, unsubscribed
    and published; `room` is what can_publish() answers."""

    def __init__(self):
        self.subs = []
        self.unsubs = []
        self.pubs = []
        self.room = True

    def subscribe(self, topic, qos=1):
        self.subs.append(topic)

    def unsubscribe(self, topic):
        self.unsubs.append(topic)

    def publish(self, topic, payload, qos=1):
        self.pubs.append((topic, payload))

    def can_publish(self):
        return self.room

