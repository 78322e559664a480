# Lets pytest import the core tests the way tests/mpy_run.py does under
# MicroPython: src/ for the package, this directory for `util`.
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (os.path.join(_HERE, "..", "..", "src"), _HERE):
    _p = os.path.normpath(_p)
    if _p not in sys.path:
        sys.path.insert(0, _p)
