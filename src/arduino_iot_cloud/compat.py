# Runtime differences between CPython and MicroPython, in one place.
#
# Everything else in the library imports these names and stays plain Python
# that both runtimes run.  Features are detected with try/except ImportError,
# never by checking sys.implementation.  This module is a leaf that does no
# I/O: the sans-I/O core (mqtt/, session, records) imports it, and importing
# that core must not load asyncio, select, socket or ssl (tests/core and
# tests/micropython check it).  The waiting helpers are net/wait.py.

try:
    from micropython import const  # noqa: F401
    MICROPYTHON = True
except ImportError:
    MICROPYTHON = False

    def const(x):
        return x


# --- monotonic milliseconds -------------------------------------------------
# The core never reads the clock: drivers pass now_ms() in.  On MicroPython
# ticks_ms() wraps (2**30 ms, about 12 days), so it is folded into a counter
# that never wraps; devices stay up for months.
try:
    from time import ticks_ms as _ticks_ms, ticks_diff as _ticks_diff

    _clock = [_ticks_ms(), 0]

    def now_ms():
        t = _ticks_ms()
        _clock[1] += _ticks_diff(t, _clock[0])
        _clock[0] = t
        return _clock[1]

except ImportError:
    from time import monotonic as _monotonic

    _start = _monotonic()

    def now_ms():
        return int((_monotonic() - _start) * 1000)


# --- logging ------------------------------------------------------------------
# Library code logs str(error), never the exception object: a handler that
# keeps records (pytest's capture, a memory handler) would otherwise keep the
# traceback and every frame it references alive.
try:
    import logging

    getLogger = logging.getLogger
except ImportError:  # bare MicroPython: a small stand-in with lazy formatting
    class _Logger:
        level = 30  # WARNING

        def __init__(self, name):
            self.name = name

        def isEnabledFor(self, level):
            return level >= _Logger.level

        def log(self, level, msg, *args):
            if level >= _Logger.level:
                print("%s:%s:%s" % (_LEVEL_NAMES.get(level, level), self.name, msg % args if args else msg))

        def debug(self, msg, *args):
            self.log(10, msg, *args)

        def info(self, msg, *args):
            self.log(20, msg, *args)

        def warning(self, msg, *args):
            self.log(30, msg, *args)

        def error(self, msg, *args):
            self.log(40, msg, *args)

        def exception(self, msg, *args):
            self.log(40, msg, *args)

    _LEVEL_NAMES = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR"}
    _loggers = {}

    def getLogger(name=None):
        if name not in _loggers:
            _loggers[name] = _Logger(name)
        return _loggers[name]


# --- CBOR ---------------------------------------------------------------------
# cbor2 (C-accelerated) on CPython when installed, the project's own codec
# elsewhere.  Both expose dumps/loads; tags are objects with .tag and .value.
try:
    from io import BytesIO as _BytesIO

    from cbor2 import CBORDecoder as _CBORDecoder, CBORTag as CBORTag, dumps as cbor_dumps
    from cbor2 import CBORDecodeError as _Cbor2Error
    from cbor2 import CBORSimpleValue as CBORSimple  # OtaProgressCmdUp's state

    def cbor_loads(data):
        from .errors import DecodeError

        # cbor2.loads ignores bytes after the first item; a message with junk
        # after it is malformed, so read through a decoder and check the end.
        stream = _BytesIO(data)
        try:
            obj = _CBORDecoder(stream).decode()
        except (_Cbor2Error, ValueError, TypeError, IndexError, OverflowError, RecursionError,
                MemoryError) as e:
            raise DecodeError("malformed CBOR: %s" % e)
        if stream.tell() != len(data):
            raise DecodeError("malformed CBOR: %d bytes after the end of the item"
                              % (len(data) - stream.tell()))
        return obj

except ImportError:
    from .cbor import dumps as cbor_dumps, loads as cbor_loads, Tag as CBORTag  # noqa: F401
    from .cbor import Simple as CBORSimple  # noqa: F401
