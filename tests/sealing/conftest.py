# Tests of sealed properties that need CPython-only parts: pycose and
# `cryptography` (interop), the local cloud (end to end), MicroPython devices.
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (os.path.normpath(os.path.join(_HERE, "..", "..", "src")), _HERE,
           os.path.normpath(os.path.join(_HERE, "..", "e2e")), os.path.normpath(os.path.join(_HERE, "..", "micropython"))):
    if _p not in sys.path:
        sys.path.insert(0, _p)
