# Device commands.  Plain functions for pytest and tests/mpy_run.py.  The
# cloud-to-device inputs are hex written by hand (command tags are 4-byte
# tag heads: DA 0001xxxx), independent of any encoder.

from arduino_iot_cloud import cbor, commands, compat
from arduino_iot_cloud.errors import DecodeError, LocalError
from util import raises, tohex, unhex

THING = "7a1c2e44-0000-4000-8000-0000000000aa"


def _text(s):
    # Hand-written text head for short strings (< 256 bytes).
    b = s.encode()
    head = "%02x" % (0x60 | len(b)) if len(b) < 24 else "78%02x" % len(b)
    return head + tohex(b)


def _bytes(b):
    head = "%02x" % (0x40 | len(b)) if len(b) < 24 else "58%02x" % len(b)
    return head + tohex(b)


def _cmd(tag, *items):
    # DA <tag> 8n <items...>
    return unhex("da%08x%02x" % (tag, 0x80 | len(items)) + "".join(items))


OTA_ID = bytes(range(16))
SHA_A = bytes(range(32))
SHA_B = bytes(range(32, 64))
URL = "https://ota.example/fw.ota"


def test_tag_constants():
    assert commands.OTA_BEGIN_UP == 0x010000
    assert commands.OTA_UPDATE_DOWN == 0x010100
    assert commands.OTA_PROGRESS_UP == 0x010200
    assert commands.THING_BEGIN == 0x010300
    assert commands.THING_UPDATE == 0x010400
    assert commands.LAST_VALUES_BEGIN == 0x010500
    assert commands.LAST_VALUES_UPDATE == 0x010600
    assert commands.DEVICE_BEGIN == 0x010700
    assert commands.TIMEZONE_UP == 0x010800
    assert commands.TIMEZONE_DOWN == 0x010900
    assert commands.THING_DETACH == 0x011000


def test_device_begin_golden():
    assert commands.device_begin("1.4.1-async") == unhex("DA 00010700 81 6B 312E342E312D6173796E63")


def test_encoders():
    assert tohex(commands.thing_begin()) == "da0001030081" + "60"
    assert tohex(commands.thing_begin(THING)) == "da0001030081" + _text(THING)
    assert tohex(commands.last_values_begin()) == "da0001050080"
    assert tohex(commands.timezone_up()) == "da0001080080"
    raises(LocalError, commands.device_begin, 141)
    raises(LocalError, commands.device_begin, b"1.4.1")
    raises(LocalError, commands.thing_begin, None)


def test_decode_thing_update_and_detach():
    assert commands.decode_down(_cmd(0x010400, _text(THING))) == (commands.THING_UPDATE, (THING,))
    assert commands.decode_down(_cmd(0x010400, "60")) == (commands.THING_UPDATE, ("",))
    assert commands.decode_down(_cmd(0x011000, _text(THING))) == (commands.THING_DETACH, (THING,))
    assert commands.decode_down(_cmd(0x010400, _text("t" * 128))) == (commands.THING_UPDATE, ("t" * 128,))


def test_decode_last_values_update():
    senml = "81A2006474656D7002FB4035800000000000"
    tag, fields = commands.decode_down(_cmd(0x010600, _bytes(unhex(senml))))
    assert tag == commands.LAST_VALUES_UPDATE
    assert fields == (unhex(senml),) and type(fields[0]) is bytes


def test_decode_timezone_down():
    got = commands.decode_down(_cmd(0x010900, "190E10", "1A6A0A2F00"))
    assert got == (commands.TIMEZONE_DOWN, (3600, 1779052288))
    got = commands.decode_down(_cmd(0x010900, "390E0F", "00"))
    assert got == (commands.TIMEZONE_DOWN, (-3600, 0))


def test_decode_ota_update():
    data = _cmd(0x010100, _bytes(OTA_ID), _text(URL), _bytes(SHA_A), _bytes(SHA_B))
    assert commands.decode_down(data) == (commands.OTA_UPDATE_DOWN, (OTA_ID, URL, SHA_A, SHA_B))


def test_indefinite_array_accepted():
    data = unhex("da00010400 9f".replace(" ", "") + _text(THING) + "ff")
    assert commands.decode_down(data) == (commands.THING_UPDATE, (THING,))


def _rejected(data, words):
    e = raises(DecodeError, commands.decode_down, data)
    msg = str(e)
    for w in words:
        assert w in msg, "%r does not mention %r" % (msg, w)


def test_rejects_untagged_and_unknown():
    _rejected(unhex("81" + _text(THING)), ["not a CBOR tag"])
    _rejected(unhex("a100" + _text(THING)), ["not a CBOR tag"])
    _rejected(unhex("01"), ["not a CBOR tag"])
    _rejected(_cmd(0x010a00, _text(THING)), ["unknown", "0x10a00"])
    _rejected(_cmd(0x020400, _text(THING)), ["unknown"])
    _rejected(unhex("d9ffff81" + _text(THING)), ["unknown"])


def test_rejects_device_to_cloud_tags():
    for tag in (0x010000, 0x010200, 0x010300, 0x010500, 0x010700, 0x010800):
        _rejected(_cmd(tag), ["device-to-cloud", commands.NAMES[tag]])
    _rejected(commands.device_begin("1.0"), ["DeviceBeginCmd"])
    _rejected(commands.thing_begin(THING), ["ThingBeginCmd"])


def test_rejects_wrong_shapes():
    _rejected(unhex("da00010400" + _text(THING)), ["must wrap an array"])
    _rejected(unhex("da00010400a100" + _text(THING)), ["must wrap an array"])
    _rejected(_cmd(0x010400), ["expected 1 fields, got 0"])
    _rejected(_cmd(0x010400, _text(THING), _text(THING)), ["expected 1 fields, got 2"])
    _rejected(_cmd(0x010900, "00"), ["TimezoneCommandDown", "expected 2"])
    _rejected(_cmd(0x010100, _bytes(OTA_ID), _text(URL), _bytes(SHA_A)), ["expected 4"])


def test_rejects_wrong_field_types():
    _rejected(_cmd(0x010400, "01"), ["thing id", "text"])
    _rejected(_cmd(0x010400, _bytes(b"abc")), ["thing id"])
    _rejected(_cmd(0x011000, "f6"), ["thing id"])
    _rejected(_cmd(0x010600, _text("not bytes")), ["LastValuesUpdateCmd", "field 0", "byte string"])
    _rejected(_cmd(0x010900, "fb40ac200000000000", "00"), ["field 0", "integer"])
    _rejected(_cmd(0x010900, "00", "f5"), ["field 1", "integer"])
    _rejected(_cmd(0x010900, _text("3600"), "00"), ["integer"])
    _rejected(_cmd(0x010100, _text("id"), _text(URL), _bytes(SHA_A), _bytes(SHA_B)), ["field 0"])
    _rejected(_cmd(0x010100, _bytes(OTA_ID[:15]), _text(URL), _bytes(SHA_A), _bytes(SHA_B)), ["16 bytes"])
    _rejected(_cmd(0x010100, _bytes(OTA_ID), _bytes(b"u"), _bytes(SHA_A), _bytes(SHA_B)), ["field 1", "text"])
    _rejected(_cmd(0x010100, _bytes(OTA_ID), _text(URL), _bytes(SHA_A[:31]), _bytes(SHA_B)), ["field 2", "32 bytes"])
    _rejected(_cmd(0x010100, _bytes(OTA_ID), _text(URL), _bytes(SHA_A), _bytes(SHA_B + b"x")), ["field 3", "32 bytes"])


def test_rejects_unsafe_thing_ids():
    for bad in ("a/b", "+", "x#", "#", "a\x00b", "/", "t" * 129):
        _rejected(_cmd(0x010400, _text(bad)), ["thing id"])
        _rejected(_cmd(0x011000, _text(bad)), ["thing id"])
    raises(DecodeError, commands.check_thing_id, 5)
    assert commands.check_thing_id(THING) == THING


def test_malformed_cbor_raises_decode_error():
    good = [
        commands.device_begin("1.4.1-async"),
        _cmd(0x010400, _text(THING)),
        _cmd(0x010600, _bytes(unhex("81A2006474656D7002FB4035800000000000"))),
        _cmd(0x010900, "190E10", "1A6A0A2F00"),
        _cmd(0x010100, _bytes(OTA_ID), _text(URL), _bytes(SHA_A), _bytes(SHA_B)),
    ]
    for data in good:
        for n in range(len(data)):
            try:
                commands.decode_down(data[:n])
            except DecodeError:
                continue
            except Exception as e:
                raise AssertionError("%s[:%d] raised %s: %s" % (tohex(data), n, type(e).__name__, e))
            raise AssertionError("%s[:%d] was accepted" % (tohex(data), n))
    raises(DecodeError, commands.decode_down, b"")
    raises(DecodeError, commands.decode_down, b"\xda\x00\x01\x04")


def test_trailing_bytes_rejected():
    # See test_senml.test_trailing_bytes_rejected: holds with the project's codec.
    if compat.cbor_loads is not cbor.loads:
        return
    raises(DecodeError, commands.decode_down, _cmd(0x010400, _text(THING)) + b"\x00")
