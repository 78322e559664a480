"""What the dashboard shows and accepts, without a browser: widgets chosen by the shape of
a value, sealed values recognised, writes checked against the property's kind."""

import base64
import math

import cbor2
import pytest

pytest.importorskip("aiohttp")

from arduino_iot_cloud.localcloud.web import view  # noqa: E402


def b64url(raw):
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("value, kind", [
    (True, "switch"), (0, "number"), (2.5, "number"), ("text", "text"), (None, "none"),
    ({"lat": 1.0, "lon": 2.0}, "location"), ({"hue": 1.0, "sat": 2.0, "bri": 3.0}, "color"),
    ({"swi": True, "hue": 1.0, "sat": 2.0, "bri": 3.0}, "colored_light"), ({"swi": True, "bri": 3.0}, "dimmed_light"),
    ({"swi": True, "vol": 1, "mut": False, "pbc": 3, "inp": 1, "cha": 2}, "television"),
    ({"frm": 1, "to": 2, "len": 3, "msk": 4}, "schedule"), ({"a": 1}, "fields"),
])
def test_widget_by_shape(value, kind):
    assert view.widget(value) == kind


@pytest.mark.parametrize("tag, items", [(16, 3), (17, 4), (18, 4), (96, 4), (98, 4)])
def test_cose_messages_are_sealed(tag, items):
    message = cbor2.dumps(cbor2.CBORTag(tag, [b"\xa1\x01\x26", {}] + [b"x" * 20] * (items - 2)))
    assert view.is_sealed(b64url(message))
    assert view.widget(b64url(message)) == "sealed"


@pytest.mark.parametrize("text", [
    "hello world", "", "QUJDREVGR0hJSktMTU5PUA",  # plain base64url of text, not COSE
    b64url(cbor2.dumps([1, 2, 3, 4]) * 5),  # an untagged array
    b64url(b"\xd2\x84\x01" + b"x" * 20),  # Sign1's tag, but no byte string for the protected header
    "0oQ", "not base64 at all!!" * 3,
])
def test_other_strings_are_not_sealed(text):
    assert not view.is_sealed(text)


def test_jsonable_keeps_what_json_cannot_carry_printable():
    assert view.jsonable({"a": math.nan, "b": [math.inf, b"\x01\xff"], "c": 1.5}) == \
        {"a": "nan", "b": ["inf", "01ff"], "c": 1.5}


def test_chart_points_keep_the_last_numbers():
    history = [(float(t), t) for t in range(500)] + [(500.0, "text"), (501.0, True), (502.0, math.nan)]
    points = view.chart_points(history)
    assert len(points) == view.CHART_POINTS and points[-1] == [499.0, 499]


def test_writes_keep_the_kind_and_floats_stay_floats():
    assert view.check_write("sw", True, False) is True
    assert view.check_write("t", 22, 21.5) == 22.0 and isinstance(view.check_write("t", 22, 21.5), float)
    assert view.check_write("n", 3, 1) == 3 and isinstance(view.check_write("n", 3, 1), int)
    assert view.check_write("n", 3.0, 1) == 3 and isinstance(view.check_write("n", 3.0, 1), int)
    assert view.check_write("loc", {"lat": 1}, {"lat": 0.5, "lon": 2.0}) == {"lat": 1.0}
    assert view.check_write("new", "x", None) == "x"  # no value yet: any scalar
    for name, value, current, words in [
        ("sw", 1, False, "bool"), ("sw", "true", False, "bool"), ("n", True, 1, "number"),
        ("loc", 1.0, {"lat": 0.5}, "composite"), ("loc", {}, {"lat": 0.5}, "at least one"),
        ("loc", {"x": 1}, {"lat": 0.5}, "no field"), ("loc", {"lat": [1]}, {"lat": 0.5}, "takes"),
        ("s", {"a": 1}, "text", "not a composite"), ("s", None, "text", "takes"), ("", 1, None, "name"),
        ("n", math.inf, 1.0, "takes"), ("n", 2.5, 1, "whole number"), ("tv", {"vol": 2.5}, {"vol": 1}, "whole"),
        ("secret", "x", b64url(cbor2.dumps(cbor2.CBORTag(16, [b"\xa1\x01\x03", {}, b"c" * 20]))), "sealed"),
    ]:
        with pytest.raises(view.BadWrite, match=words):
            view.check_write(name, value, current)
