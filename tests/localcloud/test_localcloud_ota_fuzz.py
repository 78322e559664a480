"""What the cloud's OTA side reads from outside never breaks it: OTA commands from devices (CBOR
fields), Range headers, and OTA files handed to send_ota / `localcloud ota` (header + LZSS)."""

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from arduino_iot_cloud.localcloud import otawire
from arduino_iot_cloud.localcloud.otaserver import parse_range
from arduino_iot_cloud.localcloud.wire import WireError, decode_command
from arduino_iot_cloud.ota import pack
from arduino_iot_cloud.ota.lzss import LZSSDecoder

FIELD = st.one_of(st.binary(max_size=40), st.integers(min_value=-2**64, max_value=2**64), st.text(max_size=10),
                  st.floats(), st.booleans(), st.none(), st.builds(cbor2.CBORSimpleValue, st.integers(0, 19)),
                  st.lists(st.integers(), max_size=3))


@settings(max_examples=800, deadline=None)
@given(st.lists(FIELD, max_size=6))
def test_ota_decoders_raise_only_wire_errors(fields):
    for decode in (otawire.decode_ota_begin, otawire.decode_ota_progress):
        try:
            out = decode(fields)
        except WireError:
            continue
        if decode is otawire.decode_ota_progress:
            assert out["state"] in otawire.STATES.values() and isinstance(out["state_data"], int)
            otawire.describe_progress(out)
        else:
            assert len(bytes.fromhex(out)) == 32


@settings(max_examples=800, deadline=None)
@given(st.binary(max_size=80))
def test_ota_payload_bytes_through_the_emulators_path(payload):
    try:
        tag, fields = decode_command(payload)
    except WireError:
        return
    for decode in (otawire.decode_ota_begin, otawire.decode_ota_progress):
        try:
            decode(fields)
        except WireError:
            pass


@settings(max_examples=800, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=30), st.from_regex(r"bytes=\d{0,4}-\d{0,4}(,\d-\d)?", fullmatch=True)),
       st.integers(0, 5000))
def test_parse_range_answers_within_the_file(header, size):
    got = parse_range(header, size)
    if got is None or got == "unsatisfiable":
        return
    first, last = got
    assert 0 <= first <= last < size


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_damaged_ota_files_raise_pack_error(tail):
    good = pack.build_ota_file(b"print('hello')\n" * 20)
    for blob in (tail, good[:20] + tail, good[: len(tail) % len(good)], good[:8] + tail + good[8 + len(tail):]):
        try:
            pack.read_ota_file(blob)
        except pack.PackError:
            pass
    # the decoder takes any bytes (a CRC-valid file may still hold anything)
    assert len(bytes(LZSSDecoder().feed(tail))) <= len(tail) * 8 // 16 * 17 + len(tail)
