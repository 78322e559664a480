"""The one rule for a write from the cloud side (``set`` of the CLI and of LocalCloud,
and the dashboard): a value must keep the type of the property.

The local cloud has no declared types, so it takes a property's type from the value the
device itself last reported, never from a write: a stray ``set DEV sw1 '"x"'`` must not
lock the property so that ``set DEV sw1 true`` is refused next (the device follows the
same principle, see records/property.py).  A property the device has not reported takes any
plain value.  No I/O here: the callers pass the reference value.
"""

from __future__ import annotations

import json
import math
from typing import Any


class BadWrite(ValueError):
    """A write the local cloud refuses; the message says why."""


def check_write(name: str, value: Any, reported: Any) -> Any:
    """The value to write to property ``name`` whose device last reported ``reported``
    (None: not reported yet), or BadWrite.

    A value must keep the property's kind (a bool takes true/false, a number a number,
    a string a string); a composite takes some of its own fields.  A whole number for a
    float becomes a float, and a whole float for an int an int.
    """
    if not isinstance(name, str) or not name or len(name) > 256:
        raise BadWrite("a property name is a non-empty string")
    if isinstance(value, dict):
        if reported is not None and not isinstance(reported, dict):
            raise BadWrite("%s is a %s, not a composite" % (name, _kind(reported)))
        if not value:
            raise BadWrite("write at least one field of %s" % name)
        for field, v in value.items():
            if isinstance(reported, dict) and field not in reported:
                raise BadWrite("%s has no field %r (fields: %s)" % (name, field, ", ".join(sorted(reported))))
            if not _scalar(v):
                raise BadWrite("field %s:%s takes a bool, a number or a string" % (name, field))
            if isinstance(reported, dict) and reported[field] is not None and _kind(v) != _kind(reported[field]):
                raise BadWrite("field %s:%s is a %s, not a %s" % (name, field, _kind(reported[field]), _kind(v)))
        return {field: _same_number_type(v, reported.get(field) if isinstance(reported, dict) else None)
                for field, v in value.items()}
    if not _scalar(value):
        raise BadWrite("%s takes a bool, a number, a string or a dict of fields" % name)
    if isinstance(reported, dict):
        raise BadWrite("%s is a composite: write a dict of its fields" % name)
    if reported is not None and _kind(value) != _kind(reported):
        raise BadWrite("%s is a %s, not a %s (the device reported %s)"
                       % (name, _kind(reported), _kind(value), json.dumps(reported, default=repr)))
    return _same_number_type(value, reported)


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _same_number_type(value: Any, reported: Any) -> Any:
    """A number of the reported value's type: JSON cannot tell 22 from 22.0, so a whole
    number sent for a float becomes a float, and a whole float sent for an int an int; a
    fraction for an int is refused."""
    if isinstance(value, bool) or isinstance(reported, bool):
        return value
    if isinstance(reported, float) and isinstance(value, int):
        return float(value)
    if isinstance(reported, int) and isinstance(value, float):
        if not value.is_integer():
            raise BadWrite("%r is not a whole number, and the property holds one (%d)" % (value, reported))
        return int(value)
    return value


def _scalar(v: Any) -> bool:
    return isinstance(v, (bool, str)) or is_number(v)


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return type(v).__name__
