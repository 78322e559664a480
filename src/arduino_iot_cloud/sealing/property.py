# A sealed property in the registry: plaintext for the device's code, a sealed
# string on the wire.
#
# Sending: set() seals the new value at once (so a context that cannot seal
# says so to the caller, and nothing is published); records() hands the
# sealed text to the network.
# Receiving: apply_remote() opens the text.  Refusals raise UnsealError, which
# the registry logs at warning and skips (no on_write, nothing else lost).
# Returning None means "nothing applied, no on_write": the message last
# accepted for this property delivered again on e/i (a QoS 1 duplicate or a
# replay of the latest value must not run on_write twice), and the device's
# own sealed value coming back with the cloud's last values (it cannot tell
# its latest from an older one without writing its state on every publish, so
# it keeps what it has).

from ..compat import getLogger
from ..errors import UnsealError, ValueTypeError
from ..records.kinds import coerce, declared_kind
from ..records.property import Property
from . import message

log = getLogger("arduino_iot_cloud.sealing")

_PLAIN = (bool, int, float, str)


class SealedProperty(Property):
    """A plain property (bool, int, float, str) whose value travels sealed."""

    def __init__(self, context, name, value=None, on_read=None, on_write=None, interval=None, type=None):
        if value is not None and value.__class__ not in _PLAIN:
            raise ValueTypeError("sealed property %s: a bool, int, float or str" % name)
        kind, value = declared_kind(name, type, value, _PLAIN)
        Property.__init__(self, name, None, on_read, on_write, interval)
        self.kind = kind  # None: untyped, as for any property (records/property.py)
        self.context = context
        self.text = None  # the sealed text of the current value
        if value is not None:
            self.set(value)

    def __repr__(self):
        return "<sealed %s>" % self.name  # never the plaintext

    def set(self, value):
        if value is None:
            raise ValueTypeError("property %s cannot be set to None" % self.name)
        if self.kind is not None:
            try:
                value = coerce(self.kind, value)
            except ValueTypeError as e:
                raise ValueTypeError("property %s: %s" % (self.name, e))
        if value == self.value and self.value is not None:
            return
        self.text = self.context.seal(self.name, value)  # may raise: then nothing changed
        Property.set(self, value)

    def records(self):
        return ((self.name, self.text),)

    def apply_remote(self, field, value, last_values):
        if last_values and self.dirty:
            return False  # the device's own change wins (records/property.py)
        if not isinstance(value, str):
            raise UnsealError(message.PLAIN_VALUE, "a %s where a sealed string belongs" % type(value).__name__)
        try:
            plain, repeat = self.context.open(self.name, value)
        except UnsealError as e:
            if last_values and e.reason == message.OWN_MESSAGE:
                log.info("keeping the value of %s: the last value is the device's own", self.name)
                return None
            raise
        if repeat and not last_values:
            log.info("sealed value of %s delivered again: already applied", self.name)
            return None
        try:  # untyped (kind None): any plain value, the latest wins (records/property.py)
            plain = coerce(self.kind, plain)
        except ValueTypeError as e:
            raise UnsealError(message.MALFORMED, "property %s: %s" % (self.name, e))
        changed = plain != self.value or self.value is None
        self.value = plain
        self.text = value
        self.dirty = False
        return changed
