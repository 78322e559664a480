# compat.py: the runtime layer both codecs and drivers rely on.

from arduino_iot_cloud import compat
from arduino_iot_cloud.errors import DecodeError


def test_cbor_loads_rejects_trailing_bytes_on_either_codec():
    assert compat.cbor_loads(b"\x82\x01\x02") == [1, 2] or compat.cbor_loads(b"\x82\x01\x02") == (1, 2)
    for data in (b"\x00\x00", b"\x81\x01\xff", b""):
        try:
            compat.cbor_loads(data)
        except DecodeError:
            continue
        raise AssertionError("accepted %r" % data)


def test_now_ms_is_monotonic_integer_milliseconds():
    a = compat.now_ms()
    b = compat.now_ms()
    assert isinstance(a, int) and b >= a


def test_logger_formats_lazily():
    log = compat.getLogger("arduino_iot_cloud.test")

    class Loud:
        def __str__(self):
            raise AssertionError("formatted although the level is off")

    if not log.isEnabledFor(10):
        log.debug("value %s", Loud())
