# Properties, composite types, tasks, and the registry that holds them:
# records.py became this package; its code is in property.py for now, and
# every name importers used from records.py is importable from here.

from ..errors import ValueTypeError  # noqa: F401
from .property import (  # noqa: F401
    RESERVED_NAMES, Color, ColoredLight, Composite, DimmedLight, Location, Property, Registry, Schedule, Task,
    Television, coerce, day_and_month, declared_kind, kind_of,
)
