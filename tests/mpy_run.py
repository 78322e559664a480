# Run the core tests under MicroPython (it has no pytest):
#
#     micropython tests/mpy_run.py [tests/core/test_x.py ...]
#
# With no arguments every tests/core/test_*.py runs.  Each module-level
# function whose name starts with "test_" is called with no arguments; a test
# passes when it returns without raising.  The last line is "N passed, N
# failed" and the exit status is 1 when anything failed.  Also runs on CPython.

import os
import sys


def _dirname(path):
    i = path.rfind("/")
    if i < 0:
        return "."
    return path[:i] or "/"


_TESTS = _dirname(__file__ if "__file__" in globals() else sys.argv[0])
_ROOT = _dirname(_TESTS) if _TESTS != "." else ".."
_CORE = _TESTS + "/core"


def _print_exception(e):
    pe = getattr(sys, "print_exception", None)  # MicroPython
    if pe is not None:
        pe(e)
    else:
        import traceback

        traceback.print_exception(type(e), e, e.__traceback__)


def _module_names(args):
    names = []
    if not args:
        for f in sorted(os.listdir(_CORE)):
            if f.startswith("test_") and f.endswith(".py"):
                names.append(f[:-3])
        return names
    for a in args:
        d = _dirname(a)
        if d not in sys.path:
            sys.path.insert(0, d)
        f = a[len(d) + 1:] if "/" in a else a
        names.append(f[:-3] if f.endswith(".py") else f)
    return names


def main(args):
    for p in (_CORE, _ROOT + "/src"):
        if p not in sys.path:
            sys.path.insert(0, p)
    passed = failed = 0
    for name in _module_names(args):
        try:
            mod = __import__(name)
        except Exception as e:
            failed += 1
            print("FAIL %s (import): %s: %s" % (name, type(e).__name__, e))
            _print_exception(e)
            continue
        for attr in sorted(dir(mod)):
            if not attr.startswith("test_"):
                continue
            fn = getattr(mod, attr)
            if not callable(fn):
                continue
            try:
                fn()
            except Exception as e:
                failed += 1
                print("FAIL %s.%s: %s: %s" % (name, attr, type(e).__name__, e))
                _print_exception(e)
            else:
                passed += 1
                print("ok   %s.%s" % (name, attr))
    print("%d passed, %d failed" % (passed, failed))
    return failed


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1:]) else 0)
