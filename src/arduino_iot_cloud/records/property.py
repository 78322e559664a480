# Property and Composite: the records a device's values live in.
#
# Theory of operation
# -------------------
# A record remembers whether the device changed it since it was last handed
# to the network (`dirty`).  Only dirty records are published; a write from
# the cloud touches only the records it names, so a local change to any other
# property is never lost while a message is being applied.
#
# A property's type is declared by the device's code, never learnt from the
# cloud: register(type=bool), or a value= to start from.  A property with
# neither takes any plain value, from either side, and the latest one wins:
# one stray write ("x" to a switch) must not lock the property so that every
# later good write is refused.  (Learning the type from the first value seen
# did exactly that, and a user callback that copies the stray value to
# another property would lock that one too; refusing a "conflicting" record
# cannot tell the stray one from the good one either.)  A change of type is
# logged, naming type= as the way to refuse it.
#
# Last values (the cloud's stored copy, fetched after every attach) follow one
# rule: a property the device changed and has not published yet keeps the
# device's value (it is published next); every other property takes the
# cloud's value.
#
# The registry that holds the records and runs their callbacks: registry.py.

from ..compat import getLogger
from ..errors import LocalError, ValueTypeError
from .kinds import _family, coerce, declared_kind, kind_of

log = getLogger("arduino_iot_cloud.records")

# Names the protocol uses itself; a user property may not take them.
RESERVED_NAMES = ("thing_id", "tz_offset", "tz_dst_until", "r:m")


class Property:
    """A plain property: bool, int, float, str or bytes."""

    def __init__(self, name, value=None, on_read=None, on_write=None, interval=None, type=None):
        if not isinstance(name, str) or not name or name in RESERVED_NAMES or ":" in name:
            raise LocalError("invalid property name %r" % (name,))
        self.name = name
        self.kind, value = declared_kind(name, type, value)  # None: untyped
        self.value = value
        self.dirty = value is not None
        self.registry = None  # set by Registry.add; told when the record changes
        self.on_read = on_read
        self.on_write = on_write
        self.interval_ms = int((1.0 if interval is None else interval) * 1000)
        self.next_run = 0

    def __repr__(self):
        return "%s" % (self.value,)

    @property
    def initialized(self):
        return self.value is not None

    def set(self, value):
        """A change made by the device; it will be published."""
        if value is None:
            raise ValueTypeError("property %s cannot be set to None" % self.name)
        try:
            if self.kind is None:  # untyped: any plain value (see the top of this file)
                kind_of(value)
            else:
                value = coerce(self.kind, value)
        except ValueTypeError as e:
            raise ValueTypeError("property %s: %s" % (self.name, e))
        if value != self.value or self.value is None or type(value) is not type(self.value):  # True == 1
            self.value = value
            self._changed()

    def _changed(self):
        if not self.dirty:
            self.dirty = True
            if self.registry is not None:
                self.registry.queue(self)

    def apply_remote(self, field, value, last_values):
        """Apply a value from the cloud.  Returns True if it changed anything."""
        if last_values and self.dirty:
            return False
        if self.kind is None:  # untyped: the cloud's latest value wins (see the top of this file)
            if self.value is not None and _family(value) != _family(self.value):
                log.warning("property %s changed type from %s to %s; register it with type= to refuse "
                            "the wrong one", self.name, type(self.value).__name__, type(value).__name__)
            kind_of(value)
        else:
            value = coerce(self.kind, value)
        changed = value != self.value or self.value is None or type(value) is not type(self.value)
        self.value = value
        self.dirty = False
        return changed

    def records(self):
        return ((self.name, self.value),)

    def run(self, client):
        if self.on_read is not None:
            value = self.on_read(client)
            if value is not None:
                self.set(value)

    def written(self, client):
        if self.on_write is not None:
            self.on_write(client, self.value)


class Composite(Property):
    """A property made of named fields, sent as records "<name>:<field>"."""

    FIELDS = ()  # ((field name, kind), ...)

    def __init__(self, name, on_read=None, on_write=None, interval=None, value=None, **fields):
        for key in fields:
            if key not in self._kinds():
                raise LocalError("%s has no field %r" % (type(self).__name__, key))
        object.__setattr__(self, "_fields", {})
        super().__init__(name, None, on_read, on_write, interval)
        if isinstance(value, dict):
            fields.update(value)
        for field, kind in self.FIELDS:
            v = fields.get(field)
            self._fields[field] = None if v is None else self._check(field, kind, v)
        self.kind = dict
        self.value = self
        self.dirty = self.initialized

    @classmethod
    def _kinds(cls):
        return dict(cls.FIELDS)

    def _check(self, field, kind, value):
        try:
            return coerce(kind, value)
        except ValueTypeError as e:
            raise ValueTypeError("property %s:%s: %s" % (self.name, field, e))

    @property
    def initialized(self):
        for v in self._fields.values():
            if v is None:
                return False
        return True

    def __getattr__(self, attr):
        fields = self.__dict__.get("_fields")
        if fields is not None and attr in fields:
            return fields[attr]
        raise AttributeError("'%s' object has no attribute '%s'" % (type(self).__name__, attr))

    def __setattr__(self, attr, value):
        fields = self.__dict__.get("_fields")
        if fields is not None and attr in fields:
            self._set_field(attr, value)
        else:
            object.__setattr__(self, attr, value)

    def __contains__(self, field):
        return field in self._fields

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join("%s=%r" % kv for kv in self.as_dict().items()))

    def __eq__(self, other):
        if isinstance(other, Composite):
            return self.as_dict() == other.as_dict()
        if isinstance(other, dict):
            return self.as_dict() == other
        return NotImplemented

    def as_dict(self):
        return dict(self._fields)

    def _set_field(self, field, value):
        kind = self._kinds()[field]
        value = self._check(field, kind, value)
        if self._fields[field] != value or self._fields[field] is None:
            self._fields[field] = value
            self._changed()

    def set(self, value):
        if isinstance(value, Composite):
            value = value.as_dict()
        if not isinstance(value, dict):
            raise ValueTypeError("property %s takes a dict of %s" % (self.name, ", ".join(self._fields)))
        for field in value:
            if field not in self._fields:
                raise ValueTypeError("property %s has no field %r" % (self.name, field))
        for field, v in value.items():
            self._set_field(field, v)

    def apply_remote(self, field, value, last_values):
        if last_values and self.dirty:
            return False
        value = coerce(self._kinds()[field], value)
        changed = self._fields[field] != value
        self._fields[field] = value
        self.dirty = False
        return changed

    def records(self):
        # Composites are always sent whole, and only once every field is known.
        if not self.initialized:
            return ()
        name = self.name
        fields = self._fields
        return tuple((name + ":" + f, fields[f]) for f, _kind in self.FIELDS)

    def written(self, client):
        if self.on_write is not None:
            self.on_write(client, self)
