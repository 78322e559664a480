# Type stubs for the package: what it re-exports.

from ..errors import ValueTypeError as ValueTypeError
from .property import (
    RESERVED_NAMES as RESERVED_NAMES,
    Color as Color,
    ColoredLight as ColoredLight,
    Composite as Composite,
    DimmedLight as DimmedLight,
    Location as Location,
    Property as Property,
    Registry as Registry,
    Schedule as Schedule,
    Task as Task,
    Television as Television,
    coerce as coerce,
    day_and_month as day_and_month,
    declared_kind as declared_kind,
    kind_of as kind_of,
)
