# The schedule calendar's cost per call, near today and at the far end of
# int64 (where a walk over the years from 1970 would never finish): the
# figures show whether day_and_month() and a monthly Schedule's check cost the
# same whatever the date.  Runs on CPython and on the MicroPython unix port:
#
#     PYTHONPATH=src python3 benchmarks/calendar_cost.py
#     MICROPYPATH=src:.frozen micropython benchmarks/calendar_cost.py
#
# Prints one line per case: microseconds per call (best of 5 rounds).

import sys
import time

from arduino_iot_cloud.records.schedule import Schedule, day_and_month

try:
    _ticks_us, _diff = time.ticks_us, time.ticks_diff  # MicroPython
except AttributeError:
    def _ticks_us():
        return time.perf_counter_ns() // 1000

    def _diff(a, b):
        return a - b

CALLS = 2000
CASES = (("2026-12-25", 1798183800), ("2**40 s (year ~36812)", 2 ** 40), ("2**62 s", 2 ** 62),
         ("int64 max", 2 ** 63 - 1))


def per_call_us(fn, t):
    best = None
    for _ in range(5):
        start = _ticks_us()
        for _ in range(CALLS):
            fn(t)
        us = _diff(_ticks_us(), start) / CALLS
        best = us if best is None or us < best else best
    return best


def main():
    print("calendar cost on %s, %d calls per round" % (sys.implementation.name, CALLS))
    monthly = Schedule("m", frm=1, to=0, len=60, msk=(3 << 26) | 25)
    for label, t in CASES:
        print("%-24s day_and_month %7.2f us   monthly Schedule.is_active %7.2f us"
              % (label, per_call_us(day_and_month, t), per_call_us(monthly.is_active, t)))


main()
