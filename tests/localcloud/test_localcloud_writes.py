"""The one write rule of the local cloud (localcloud/writes.py), as `set` and the dashboard
apply it: the type reference is the device's last report, never an earlier write."""

import pytest

from arduino_iot_cloud.localcloud import writes


def test_a_value_keeps_the_reported_type():
    assert writes.check_write("sw1", True, False) is True
    assert writes.check_write("sw1", "x", None) == "x"  # not reported yet: any plain value
    for value, reported, words in [("x", False, "sw1 is a bool, not a string"), (1, False, "bool, not a number"),
                                   (True, 21.5, "number, not a bool"), (2.5, 3, "whole number"),
                                   ({"lat": 1}, 2, "not a composite"), ([1], None, "takes a bool")]:
        with pytest.raises(writes.BadWrite, match=words):
            writes.check_write("sw1", value, reported)


def test_the_dashboard_takes_the_type_from_the_report_not_from_a_stray_write():
    from arduino_iot_cloud.localcloud.web import view

    # Stored: a stray "x" written earlier; reported by the device: a bool.
    assert view.check_write("sw1", True, "x", False) is True
    with pytest.raises(view.BadWrite, match="sw1 is a bool, not a string"):
        view.check_write("sw1", "y", "x", False)
    # Sealed values stay out of the dashboard's reach, stored or reported.
    sealed = "0INDoQEKogRDb3duBkEASfqTXJdhcBhCcQ"
    for current, reported in ((sealed, None), (None, sealed)):
        with pytest.raises(view.BadWrite, match="sealed"):
            view.check_write("lock", "z", current, reported)
    assert view.BadWrite is writes.BadWrite  # one rule, one error
