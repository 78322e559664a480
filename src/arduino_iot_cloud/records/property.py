# Properties, composite types, tasks, and the registry that holds them.
#
# Theory of operation
# -------------------
# The registry is a dict of small record objects keyed by name, plus an index
# of composite fields ("loc:lat" -> the Location record), so an incoming SenML
# record is dispatched with one dict lookup whatever the number of properties.
#
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
# User callbacks run inside try/except: a failing callback is logged and
# never unregisters its property or breaks the connection.

from ..compat import getLogger
from ..errors import ConfigError, LocalError, UnsealError, ValueTypeError

log = getLogger("arduino_iot_cloud.records")

# Names the protocol uses itself; a user property may not take them.
RESERVED_NAMES = ("thing_id", "tz_offset", "tz_dst_until", "r:m")


def _takes_two(fn):
    """Does fn take (client, args)?  None when it cannot be read (MicroPython
    functions, callable objects, partials): the first call finds out."""
    code = getattr(fn, "__code__", None)
    skip = 0
    if code is None:
        code = getattr(getattr(fn, "__func__", None), "__code__", None)  # a bound method
        skip = 1
        if code is None:
            return None
    return code.co_argcount - skip >= 2 or bool(code.co_flags & 0x04)  # 0x04: *args


def _wrong_argument_count(e, given):
    # The TypeError of a call with the wrong number of arguments, as both
    # runtimes word it ("f() takes 1 positional arguments but 2 were given";
    # a bound method counts self; boards with terse errors say less).
    text = str(e)
    if "argument num/types mismatch" in text:
        return True
    return "positional argument" in text and ("but %d were given" % given in text
                                              or "but %d were given" % (given + 1) in text)


# Integers are sent as CBOR ints and held as int64 by the cloud and the C++
# library: a property never takes one it could not send back.  Both runtimes
# have big ints (1e300 is an integral float; a base value plus a value
# reaches 2**65), and the encoders differ beyond this range, so the check is
# ours, the same everywhere.
_INT64_MIN = -0x8000000000000000
_INT64_MAX = 0x7FFFFFFFFFFFFFFF


def _int64(value):
    if _INT64_MIN <= value <= _INT64_MAX:
        return value
    raise ValueTypeError("integer out of the 64-bit range")


def coerce(kind, value):
    """Return value converted to kind (bool, int, float, str), or raise ValueTypeError.

    Follows what the cloud sends: numbers may arrive as int for a float, as
    an integral float for an int, and as 0/1 for a bool.  An int must fit in
    64 bits, whatever the kind.
    """
    t = type(value)
    if kind is None or t is kind:
        return _int64(value) if t is int else value
    if kind is float and t is int:
        try:
            f = float(value)
        except OverflowError:  # CPython; MicroPython returns inf instead
            f = None
        if f is None or f - f != 0:  # x - x == 0 holds for finite floats only
            raise ValueTypeError("integer out of float range")
        return f
    # NaN and +-inf are refused here (int() of them raises ValueError or
    # OverflowError, not a type error).
    if kind is int and t is float and value - value == 0 and value == int(value):
        return _int64(int(value))
    if kind is bool and t is int and value in (0, 1):
        return value == 1
    raise ValueTypeError("expected %s, got %s" % (kind.__name__, t.__name__))


_KINDS = (bool, int, float, str, bytes)


def kind_of(value):
    t = type(value)
    if t is int:
        _int64(value)
    if t in _KINDS:
        return t
    raise ValueTypeError("unsupported property value type %s" % t.__name__)


def declared_kind(name, kind, value, kinds=_KINDS):
    """The kind register(type=...) declares, with value= converted to it (ConfigError
    when they disagree); None when neither is given."""
    if kind is None:
        return None if value is None else kind_of(value), value
    if kind not in kinds:
        raise ConfigError("property %s: type must be one of %s" % (name, ", ".join(k.__name__ for k in kinds)))
    if value is not None:
        try:
            value = coerce(kind, value)
        except ValueTypeError as e:
            raise ConfigError("property %s: value=%r does not agree with type=%s (%s)"
                              % (name, value, kind.__name__, e))
    return kind, value


def _family(value):
    # int and float are one family: the cloud sends 22 for a float at times.
    t = type(value)
    return float if t is int else t


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


class Task:
    """User code run every `interval` seconds: on_run(client[, args])."""

    def __init__(self, name, on_run=None, interval=1.0, args=None, **kwargs):
        if on_run is None or not callable(on_run):
            raise LocalError("Task %r needs a callable on_run" % (name,))
        if kwargs:
            raise LocalError("Task got unexpected arguments: %s" % ", ".join(kwargs))
        self.name = name
        self.on_run = on_run
        self.args = args
        self.interval_ms = int(interval * 1000)
        self.next_run = 0
        self._pass_args = True if args is not None else _takes_two(on_run)
        self.dirty = False

    def run(self, client):
        # 1.4.1 calls on_run(client, args); later releases call on_run(client).
        # Both kinds of scripts exist: pass args only to a callable that takes it.
        if self._pass_args is None:  # not known yet: try 1.4.1's way first
            try:
                self.on_run(client, self.args)
                self._pass_args = True
                return
            except TypeError as e:
                if not _wrong_argument_count(e, 2):
                    raise
            self._pass_args = False
        if self._pass_args:
            self.on_run(client, self.args)
        else:
            self.on_run(client)

    def records(self):
        return ()


_NO_CHANGES = ()


class Registry:
    """Records by name, with composite fields indexed for O(1) dispatch."""

    def __init__(self):
        self.records = {}      # name -> Property / Composite / Task
        self._fields = {}      # "name:field" -> Composite
        self._runnable = []    # records with on_read or on_run, in registration order
        self._dirty = []       # records changed by the device since they were last published

    def add(self, record):
        if record.name in self.records:
            raise LocalError("%r is already registered" % record.name)
        self.records[record.name] = record
        if isinstance(record, Composite):
            for field in record._fields:
                self._fields[record.name + ":" + field] = record
        if isinstance(record, Task) or record.on_read is not None:
            self._runnable.append(record)
        record.registry = self
        if record.dirty:
            self._dirty.append(record)

    def __contains__(self, name):
        return name in self.records

    def get(self, name):
        return self.records[name]

    def lookup(self, name, short_name=None):
        """Return (record, field) for an incoming SenML name, or (None, None)."""
        rec = self.records.get(name)
        if rec is not None and not isinstance(rec, (Composite, Task)):
            return rec, None
        rec = self._fields.get(name)
        if rec is not None:
            return rec, name[len(rec.name) + 1:]
        if short_name is not None:
            return self.lookup(short_name)
        return None, None

    def apply(self, decoded, client, last_values=False):
        """Apply decoded SenML records (name, short_name, value, time).

        Records of unknown names or of the wrong type are logged and skipped;
        the rest of the message still applies.  on_write runs once per
        touched property, after the whole message is applied.
        """
        touched = []
        for name, short_name, value, _t in decoded:
            if value is None:
                continue
            rec, field = self.lookup(name, short_name)
            if rec is None:
                log.warning("ignoring value for unknown property %s", name)
                continue
            try:
                changed = rec.apply_remote(field, value, last_values)
            except ValueTypeError as e:
                log.error("ignoring value for property %s: %s", name, str(e))
                continue
            except UnsealError as e:  # a sealed property refused it (sealing/property.py)
                log.warning("dropping value for property %s: %s", name, str(e))
                continue
            if changed is None:  # nothing applied, and no on_write (sealing/property.py)
                continue
            if (changed or not last_values) and rec not in touched:
                touched.append(rec)
        for rec in touched:
            if isinstance(rec, Composite) and not rec.initialized:
                continue
            try:
                rec.written(client)
            except Exception as e:  # a user callback: isolate it
                log.error("on_write of %s raised %s: %s", rec.name, type(e).__name__, str(e))
        return touched

    def queue(self, record):
        self._dirty.append(record)

    def changes(self):
        """Collect (name, value) pairs of changed records and mark them clean.

        Costs O(changed records), not O(registered ones).  A composite with an
        unknown field stays queued until it is complete.  With nothing queued
        (the common case: it runs on every step) it allocates nothing.
        """
        if not self._dirty:
            return _NO_CHANGES
        out = []
        waiting = []
        for rec in self._dirty:
            if not rec.dirty:
                continue  # overwritten by the cloud meanwhile
            recs = rec.records()
            if recs:
                out.extend(recs)
                rec.dirty = False
            else:
                waiting.append(rec)
        self._dirty = waiting
        return out

    def run_due(self, client, now):
        """Run on_read / on_run of records whose interval elapsed; return next deadline."""
        deadline = None
        for rec in self._runnable:
            if now >= rec.next_run:
                rec.next_run = now + rec.interval_ms
                try:
                    rec.run(client)
                except Exception as e:  # a user callback: isolate it
                    log.error("%s of %s raised %s: %s", "on_run" if isinstance(rec, Task) else "on_read",
                              rec.name, type(e).__name__, str(e))
            if deadline is None or rec.next_run < deadline:
                deadline = rec.next_run
        return deadline


class Location(Composite):
    FIELDS = (("lat", float), ("lon", float))


class Color(Composite):
    FIELDS = (("hue", float), ("sat", float), ("bri", float))


class ColoredLight(Composite):
    FIELDS = (("swi", bool), ("hue", float), ("sat", float), ("bri", float))


class DimmedLight(Composite):
    FIELDS = (("swi", bool), ("bri", float))


class Television(Composite):
    FIELDS = (("swi", bool), ("vol", int), ("mut", bool), ("pbc", int), ("inp", int), ("cha", int))
    PLAYBACK_FASTFORWARD = 0
    PLAYBACK_NEXT = 1
    PLAYBACK_PAUSE = 2
    PLAYBACK_PLAY = 3
    PLAYBACK_PREVIOUS = 4
    PLAYBACK_REWIND = 5
    PLAYBACK_STARTOVER = 6
    PLAYBACK_STOP = 7
    PLAYBACK_NONE = 255


_DAY = 86400
_UNIT_SECONDS = (1, 60, 3600, 86400)  # msk bits 31-30: seconds, minutes, hours, days
_ONE_SHOT, _FIXED, _WEEKLY, _MONTHLY, _YEARLY = 0, 1, 2, 3, 4  # msk bits 29-26
# Day of a year that starts on March 1 (so that a leap day is its last day)
# on which each month starts: March, April, ..., January, February.
_MONTH_STARTS_FROM_MARCH = (0, 31, 61, 92, 122, 153, 184, 214, 245, 275, 306, 337)
_DAYS_400_YEARS = 146097  # the Gregorian calendar repeats itself after 400 years, to the day
_DAYS_100_YEARS = 36524  # a century from March 1, unless it ends with the 400th year's leap day
_DAYS_4_YEARS = 1461
_MARCH_1_OF_YEAR_0 = -719468  # in days from 1970-01-01 (proleptic Gregorian calendar)


def day_and_month(t):
    """(day of the month 1-31, month 0-11) of unix time t, read as UTC.

    Our own arithmetic (MicroPython boards do not all count time from 1970),
    in constant time for any t: whole 400-year cycles, centuries, 4-year
    groups and years are counted off by division, never one by one.
    """
    d = (t // _DAY - _MARCH_1_OF_YEAR_0) % _DAYS_400_YEARS  # day of a cycle that starts on March 1
    d -= min(d // _DAYS_100_YEARS, 3) * _DAYS_100_YEARS  # the 4th century is a day longer
    d %= _DAYS_4_YEARS  # (a century's last group may lack its leap day: it ends early, nothing more)
    d -= min(d // 365, 3) * 365  # day of the year from March 1; the 4th year has the leap day
    month = 11
    while d < _MONTH_STARTS_FROM_MARCH[month]:
        month -= 1
    return d - _MONTH_STARTS_FROM_MARCH[month] + 1, (month + 2) % 12


class Schedule(Composite):
    """A schedule set from the dashboard; `active` tells whether it is on now.

    on_active(client, schedule) runs when the schedule becomes active.  The
    driver evaluates it every interval against the wall clock plus the
    cloud's timezone offset.
    """

    FIELDS = (("frm", int), ("to", int), ("len", int), ("msk", int))

    def __init__(self, name, on_active=None, **kwargs):
        super().__init__(name, **kwargs)
        self.on_active = on_active
        self.active = False
        self.clock = None  # set by the client: returns local unix time in seconds
        if self.on_read is None:
            self.on_read = self._evaluate

    def _evaluate(self, client):
        if not self.initialized or self.clock is None:
            return None
        now = self.clock()
        active = self.is_active(now)
        if active and not self.active and self.on_active is not None:
            self.on_active(client, self)
        self.active = active
        return None

    def is_active(self, now):
        """Whether the schedule is on at local time `now` (unix seconds plus the UTC offset).

        Between frm and to (to 0: no end), a window of len seconds opens at
        frm and then, by the type in msk: never again (one-shot); every N
        units (fixed interval); at frm's time of day on the days of a weekly
        mask (bit 0 Sunday), on one day of each month, or on one day of one
        month each year.  Windows are half-open: [start, start + len).
        """
        frm, to, length, msk = self.frm, self.to, self.len, self.msk
        if now <= 0 or now < frm or (to and now >= to):  # 0: the clock is not set yet
            return False
        kind = (msk >> 26) & 0x0F
        if kind == _ONE_SHOT:
            period = 0
        elif kind == _FIXED:
            period = _UNIT_SECONDS[(msk >> 30) & 0x03] * (msk & 0x03FFFFFF)
        elif kind in (_WEEKLY, _MONTHLY, _YEARLY):
            if not self._on_a_listed_day(kind, msk, now):
                return False
            period = _DAY
        else:  # a type this library does not know: never on, rather than on at random
            return False
        elapsed = now - frm
        return (elapsed % period if period else elapsed) < length

    @staticmethod
    def _on_a_listed_day(kind, msk, now):
        if kind == _WEEKLY:
            weekday = (now // _DAY + 4) % 7  # 1970-01-01 was a Thursday; Sunday is 0
            return bool(msk >> weekday & 1)
        day, month = day_and_month(now)
        if day != msk & 0xFF:
            return False
        return kind == _MONTHLY or month == (msk >> 8) & 0xFF
