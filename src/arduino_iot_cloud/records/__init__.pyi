# Type stubs for the package: what it re-exports (each module has its own stub).

from ..errors import ValueTypeError as ValueTypeError
from .catalogue import (
    Color as Color,
    ColoredLight as ColoredLight,
    DimmedLight as DimmedLight,
    Location as Location,
    Television as Television,
)
from .kinds import coerce as coerce, declared_kind as declared_kind, kind_of as kind_of
from .property import RESERVED_NAMES as RESERVED_NAMES, Composite as Composite, Property as Property
from .registry import Registry as Registry
from .schedule import Schedule as Schedule, day_and_month as day_and_month
from .task import Task as Task
