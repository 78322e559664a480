# The kinds of value a property holds (bool, int, float, str, bytes), and how
# a value from either side is converted to a declared kind: the rules of
# property.py's theory of operation, and the int64 range every int must fit.

from ..errors import ConfigError, ValueTypeError


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
