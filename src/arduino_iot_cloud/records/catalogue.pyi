# Type stubs for catalogue.py.

from .property import Composite

class Location(Composite):
    lat: float | None
    lon: float | None

class Color(Composite):
    hue: float | None
    sat: float | None
    bri: float | None

class ColoredLight(Composite):
    swi: bool | None
    hue: float | None
    sat: float | None
    bri: float | None

class DimmedLight(Composite):
    swi: bool | None
    bri: float | None

class Television(Composite):
    swi: bool | None
    vol: int | None
    mut: bool | None
    pbc: int | None
    inp: int | None
    cha: int | None
    PLAYBACK_FASTFORWARD: int
    PLAYBACK_NEXT: int
    PLAYBACK_PAUSE: int
    PLAYBACK_PLAY: int
    PLAYBACK_PREVIOUS: int
    PLAYBACK_REWIND: int
    PLAYBACK_STARTOVER: int
    PLAYBACK_STOP: int
    PLAYBACK_NONE: int
