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
# Everything is importable from here, as it was from records.py.

from ..errors import ValueTypeError  # noqa: F401
from .catalogue import Color, ColoredLight, DimmedLight, Location, Television  # noqa: F401
from .kinds import coerce, declared_kind, kind_of  # noqa: F401
from .property import RESERVED_NAMES, Composite, Property  # noqa: F401
from .registry import Registry  # noqa: F401
from .schedule import Schedule, day_and_month  # noqa: F401
from .task import Task  # noqa: F401
