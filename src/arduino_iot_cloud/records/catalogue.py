# The composite types of the dashboard's widgets: each is a Composite whose
# FIELDS name the records "<name>:<field>" it is sent as.  Imported on first
# use (records/__init__.py), so a device that registers none does not load it.

from .property import Composite


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
