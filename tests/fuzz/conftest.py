# Fuzz tests (hypothesis).  FUZZ_EXAMPLES sets the number of cases per
# decoder (default 10000, `make fuzz` raises it).  Every test runs under a
# wall-clock alarm so that a hang in a decoder fails the test instead of
# blocking the run.

import logging
import os
import sys

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (os.path.normpath(os.path.join(_HERE, "..", "..", "src")), _HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import fuzzlib  # noqa: E402


@pytest.fixture
def time_limit():
    """Seconds a whole test here may take (the alarm is in tests/conftest.py)."""
    return fuzzlib.TEST_TIME_LIMIT


class _FormatAndDrop(logging.Handler):
    """Formats every record (so a bad log format string fails the test) and keeps nothing."""

    def emit(self, record):
        self.format(record)


@pytest.fixture(autouse=True)
def _library_logs_formatted_not_kept():
    # Thousands of cases log malformed input; pytest would keep every record.
    log = logging.getLogger("arduino_iot_cloud")
    handler = _FormatAndDrop()
    saved = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]
