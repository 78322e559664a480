"""The emulator's own SenML/command codec (cbor2), against the byte examples of docs/protocol.md."""

import struct

import cbor2
import pytest

from arduino_iot_cloud.localcloud import wire


def test_protocol_examples_encode_to_the_documented_bytes():
    assert wire.encode_command(wire.DEVICE_BEGIN, ["1.4.1-async"]) == bytes.fromhex(
        "DA00010700816B312E342E312D6173796E63")
    assert wire.encode_senml({"temp": 21.5}) == bytes.fromhex("81A2006474656D7002FB4035800000000000")
    assert wire.encode_senml({"sw1": True}) == bytes.fromhex("81A2006373773104F5")


def test_composite_values_become_one_record_per_field():
    pack = cbor2.loads(wire.encode_senml({"loc": {"lat": 1.5, "lon": 2}, "name": "x"}))
    assert pack == [{0: "loc:lat", 2: 1.5}, {0: "loc:lon", 2: 2}, {0: "name", 3: "x"}]


def test_decode_resolves_base_fields_and_skips_value_less_records():
    payload = cbor2.dumps([{-2: "dev:", -3: 1000, 0: "a", 2: 1, 6: 5}, {0: "b", 4: False},
                           {0: "nothing"}, {0: "c", 3: "s"}, {-5: 10, 0: "d", 2: 1}])
    assert wire.decode_senml(payload) == [("dev:a", 1, 1005), ("dev:b", False, 1000),
                                          ("dev:c", "s", 1000), ("dev:d", 11, 1000)]


def test_decode_accepts_cpp_style_indefinite_arrays_and_short_floats():
    # indefinite array, single- and half-precision floats, as the C++ library sends
    payload = (b"\x9f" + b"\xa2\x00\x61t\x02\xfa" + struct.pack(">f", 21.5)
               + b"\xa2\x00\x61h\x02\xf9\x3c\x00" + b"\xa2\x00\x63l:a\x02\x02" + b"\xff")
    assert wire.group_values(wire.decode_senml(payload)) == {"t": 21.5, "h": 1.0, "l": {"a": 2}}


def test_get_last_values_request():
    assert wire.is_get_last_values(wire.decode_senml(cbor2.dumps([{0: "r:m", 3: "getLastValues"}])))
    assert wire.group_values([("r:m", "getLastValues", None)]) == {"r:m": "getLastValues"}


@pytest.mark.parametrize("payload", [b"\xff\xff", cbor2.dumps({"a": 1}), cbor2.dumps([1, 2])])
def test_bad_senml_raises(payload):
    with pytest.raises(wire.WireError):
        wire.decode_senml(payload)


def test_commands_round_trip_and_reject_untagged():
    assert wire.decode_command(wire.thing_update("t1")) == (wire.THING_UPDATE, ["t1"])
    assert wire.decode_command(wire.timezone_down(-3600, 4294967295)) == (wire.TIMEZONE_DOWN, [-3600, 4294967295])
    tag, (blob,) = wire.decode_command(wire.last_values_update({"x": 1}))
    assert tag == wire.LAST_VALUES_UPDATE and cbor2.loads(blob) == [{0: "x", 2: 1}]
    with pytest.raises(wire.WireError):
        wire.decode_command(cbor2.dumps(["x"]))
