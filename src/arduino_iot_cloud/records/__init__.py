# Properties, composite types, tasks, and the registry that holds them, one
# job a module:
#
#   kinds.py      the kinds of value (bool, int, float, str, bytes): coerce() and the int64 range
#   property.py   Property and Composite; the theory of operation is at its top
#   task.py       Task: user code run every interval
#   registry.py   Registry: records by name, values from the cloud, changes to publish
#   catalogue.py  the composite types: Location, Color, ColoredLight, DimmedLight, Television
#   schedule.py   Schedule, and the calendar it repeats by (day_and_month)
#
# Every name importers used from records.py is importable from here.  The
# composite types and Schedule are imported on first use (__getattr__ below),
# so a device that registers none does not load catalogue.py or schedule.py.

from ..errors import ValueTypeError  # noqa: F401
from .kinds import coerce, declared_kind, kind_of  # noqa: F401
from .property import RESERVED_NAMES, Composite, Property  # noqa: F401
from .registry import Registry  # noqa: F401
from .task import Task  # noqa: F401

# Name -> the module that defines it, imported on first use.
_LATER = {"Color": "catalogue", "ColoredLight": "catalogue", "DimmedLight": "catalogue", "Location": "catalogue",
          "Television": "catalogue", "Schedule": "schedule", "day_and_month": "schedule"}


def __getattr__(name):
    # MicroPython asks here before it imports a submodule too
    # (`from arduino_iot_cloud.records import schedule`): import it then.
    module = _LATER.get(name, name)
    if not name.startswith("_"):
        try:
            __import__("arduino_iot_cloud.records." + module)
        except ImportError as e:
            if "arduino_iot_cloud.records." + module not in str(e):
                raise  # the module exists but needs something missing: say what
        else:
            module = globals()[module]
            return getattr(module, name) if name in _LATER else module
    raise AttributeError("module 'arduino_iot_cloud.records' has no attribute '%s'" % name)
