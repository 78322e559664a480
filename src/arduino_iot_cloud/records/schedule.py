# Schedule: the dashboard's scheduler widget, and the calendar arithmetic
# (day_and_month) its monthly and yearly repetitions need.  Imported on first
# use (records/__init__.py), so a device that registers none does not load it.

from .property import Composite


_DAY = 86400
_UNIT_SECONDS = (1, 60, 3600, 86400)  # msk bits 31-30: seconds, minutes, hours, days
_ONE_SHOT, _FIXED, _WEEKLY, _MONTHLY, _YEARLY = 0, 1, 2, 3, 4  # msk bits 29-26
# Day of a year that starts on March 1 (so that a leap day is its last day)
# on which each month starts: March, April, ..., January, February.
_MONTH_STARTS_FROM_MARCH = (0, 31, 61, 92, 122, 153, 184, 214, 245, 275, 306, 337)
_DAYS_400_YEARS = 146097  # the Gregorian calendar repeats itself after 400 years, to the day
_DAYS_100_YEARS = 36524  # a century from March 1, unless it ends with the 400th year's leap day
_DAYS_4_YEARS = 1461
_MARCH_1_OF_YEAR_0 = -719468  # in days from 1970-01-01 (proleptic Gregorian calendar)


def day_and_month(t):
    """(day of the month 1-31, month 0-11) of unix time t, read as UTC.

    Our own arithmetic (MicroPython boards do not all count time from 1970),
    in constant time for any t: whole 400-year cycles, centuries, 4-year
    groups and years are counted off by division, never one by one.
    """
    d = (t // _DAY - _MARCH_1_OF_YEAR_0) % _DAYS_400_YEARS  # day of a cycle that starts on March 1
    d -= min(d // _DAYS_100_YEARS, 3) * _DAYS_100_YEARS  # the 4th century is a day longer
    d %= _DAYS_4_YEARS  # (a century's last group may lack its leap day: it ends early, nothing more)
    d -= min(d // 365, 3) * 365  # day of the year from March 1; the 4th year has the leap day
    month = 11
    while d < _MONTH_STARTS_FROM_MARCH[month]:
        month -= 1
    return d - _MONTH_STARTS_FROM_MARCH[month] + 1, (month + 2) % 12


class Schedule(Composite):
    """A schedule set from the dashboard; `active` tells whether it is on now.

    on_active(client, schedule) runs when the schedule becomes active.  The
    driver evaluates it every interval against the wall clock plus the
    cloud's timezone offset.
    """

    FIELDS = (("frm", int), ("to", int), ("len", int), ("msk", int))

    def __init__(self, name, on_active=None, **kwargs):
        super().__init__(name, **kwargs)
        self.on_active = on_active
        self.active = False
        self.clock = None  # set by the client: returns local unix time in seconds
        if self.on_read is None:
            self.on_read = self._evaluate

    def _evaluate(self, client):
        if not self.initialized or self.clock is None:
            return None
        now = self.clock()
        active = self.is_active(now)
        if active and not self.active and self.on_active is not None:
            self.on_active(client, self)
        self.active = active
        return None

    def is_active(self, now):
        """Whether the schedule is on at local time `now` (unix seconds plus the UTC offset).

        Between frm and to (to 0: no end), a window of len seconds opens at
        frm and then, by the type in msk: never again (one-shot); every N
        units (fixed interval); at frm's time of day on the days of a weekly
        mask (bit 0 Sunday), on one day of each month, or on one day of one
        month each year.  Windows are half-open: [start, start + len).
        """
        frm, to, length, msk = self.frm, self.to, self.len, self.msk
        if now <= 0 or now < frm or (to and now >= to):  # 0: the clock is not set yet
            return False
        kind = (msk >> 26) & 0x0F
        if kind == _ONE_SHOT:
            period = 0
        elif kind == _FIXED:
            period = _UNIT_SECONDS[(msk >> 30) & 0x03] * (msk & 0x03FFFFFF)
        elif kind in (_WEEKLY, _MONTHLY, _YEARLY):
            if not self._on_a_listed_day(kind, msk, now):
                return False
            period = _DAY
        else:  # a type this library does not know: never on, rather than on at random
            return False
        elapsed = now - frm
        return (elapsed % period if period else elapsed) < length

    @staticmethod
    def _on_a_listed_day(kind, msk, now):
        if kind == _WEEKLY:
            weekday = (now // _DAY + 4) % 7  # 1970-01-01 was a Thursday; Sunday is 0
            return bool(msk >> weekday & 1)
        day, month = day_and_month(now)
        if day != msk & 0xFF:
            return False
        return kind == _MONTHLY or month == (msk >> 8) & 0xFF
