# senml.decode and commands.decode_down under random, mutated and
# structured input, with both CBOR back ends (cbor2 and the own codec that
# MicroPython uses): only DecodeError escapes, and what comes out has the
# documented shape and types.  A thing id that could become an MQTT wildcard
# or an extra topic level never comes out of decode_down.

from hypothesis import given
from hypothesis import strategies as st

import cbor2
import fuzzlib
from arduino_iot_cloud import cbor, commands, compat, senml
from arduino_iot_cloud.errors import DecodeError
from fuzzlib import FUZZ, bounded_call, cbor_values, dumps, is_number, mutated, raw_bytes, senml_records

BACKENDS = (("cbor2", compat.cbor_loads), ("own", cbor.loads))


def with_backend(loads, fn, *args):
    saved = compat.cbor_loads
    compat.cbor_loads = loads
    try:
        return bounded_call(fn, DecodeError, *args)
    finally:
        compat.cbor_loads = saved


# --- SenML -------------------------------------------------------------------------------------

NAMES = ("temp", "sw1", "loc:lat", "loc:lon", "thing_id", "tz_offset", "r:m", "")
SENML_CORPUS = [
    senml.encode((("temp", 21.5), ("sw1", True), ("s", "hi"), ("d", b"\x01"))),
    senml.encode((("thing_id", "7a1c2e44-0000-4000-8000-0000000000aa"), ("tz_offset", 3600),
                  ("tz_dst_until", 1700000000))),
    bytes.fromhex("82A32169736F6D652D62617365006474657374 0201A200617802 02".replace(" ", "")),
    bytes.fromhex("9FA200636C617402FA40000000A200636C6F6E02FA40400000FF"),
    bytes.fromhex("83A4221A5F5E1000006161060A0201A20061620202A322F93C0000616304F4"),
    dumps([{-2: "base/", -3: 1.5e9, -5: 10, 0: "v", 2: 1, 6: 2}, {0: "w", 2: -1.5}]),
]

senml_inputs = st.one_of(raw_bytes(), mutated(SENML_CORPUS), senml_records(NAMES).map(dumps),
                         fuzzlib.base_sums().map(dumps), cbor_values().map(dumps))


def check_senml_output(out, errors):
    assert isinstance(out, list)
    for rec in out:
        assert isinstance(rec, tuple) and len(rec) == 4, rec
        name, short, value, t = rec
        assert isinstance(name, str) and name
        assert short is None or (isinstance(short, str) and short and name.endswith(short))
        assert value is None or isinstance(value, (bool, int, float, str, bytes)), type(value)
        assert t is None or is_number(t), t
    for index, message in errors:
        assert isinstance(index, int) and isinstance(message, str) and message


@FUZZ
@given(senml_inputs, st.randoms(use_true_random=False))
def test_senml_decode(data, rng):
    for case in fuzzlib.cases(data, rng):
        for _name, loads in BACKENDS:
            errors = []
            out, err = with_backend(loads, senml.decode, case, errors)
            if err is None:
                check_senml_output(out, errors)
                # Every record of the pack is either returned or reported.
                pack = loads(case)
                assert len(out) + len(errors) == len(pack)


@fuzzlib.fewer(10)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=12),
                          st.one_of(st.booleans(), st.integers(-(2 ** 63), 2 ** 63 - 1),
                                    st.floats(allow_nan=False), st.text(max_size=12),
                                    st.binary(max_size=12))), max_size=10))
def test_senml_round_trip(pairs):
    # What the device encodes, both decoders read back unchanged.
    data = senml.encode(pairs)
    for _name, loads in BACKENDS:
        out, err = with_backend(loads, senml.decode, data)
        assert err is None
        assert [(n, v) for n, _s, v, _t in out] == pairs


# --- commands ------------------------------------------------------------------------------------

THING = "7a1c2e44-0000-4000-8000-0000000000aa"
DOWN_TAGS = (commands.THING_UPDATE, commands.THING_DETACH, commands.LAST_VALUES_UPDATE,
             commands.TIMEZONE_DOWN, commands.OTA_UPDATE_DOWN)
ALL_TAGS = DOWN_TAGS + (commands.THING_BEGIN, commands.DEVICE_BEGIN, commands.LAST_VALUES_BEGIN,
                        commands.TIMEZONE_UP, commands.OTA_BEGIN_UP, commands.OTA_PROGRESS_UP)

# Thing ids: good ones, and ones a careless client would turn into a wildcard
# subscription or another topic level.
BAD_IDS = ("+", "#", "a/b", "x/#", "thing+", "/", "\x00", "a\x00b", "#/+", "a" * 129)
thing_ids = st.one_of(st.sampled_from((THING, "", "t") + BAD_IDS), st.text(max_size=20))

command_args = st.one_of(
    st.tuples(thing_ids).map(list),
    st.tuples(st.binary(max_size=40)).map(list),
    st.tuples(fuzzlib.ints, fuzzlib.ints).map(list),
    st.tuples(st.binary(min_size=16, max_size=16), st.text(max_size=20), st.binary(min_size=32, max_size=32),
              st.binary(min_size=32, max_size=32)).map(list),
    st.lists(fuzzlib.scalars, max_size=5),
    cbor_values(),
)
structured_commands = st.builds(cbor2.CBORTag, st.one_of(st.sampled_from(ALL_TAGS), fuzzlib.tag_numbers),
                                command_args).map(dumps)

COMMAND_CORPUS = [
    dumps(cbor2.CBORTag(commands.THING_UPDATE, [THING])),
    dumps(cbor2.CBORTag(commands.THING_DETACH, [THING])),
    dumps(cbor2.CBORTag(commands.LAST_VALUES_UPDATE, [SENML_CORPUS[0]])),
    dumps(cbor2.CBORTag(commands.TIMEZONE_DOWN, [3600, 1700000000])),
    dumps(cbor2.CBORTag(commands.OTA_UPDATE_DOWN, [b"i" * 16, "https://x", b"a" * 32, b"b" * 32])),
    bytes.fromhex("DA00010400816474686E67"),
]

command_inputs = st.one_of(raw_bytes(), mutated(COMMAND_CORPUS), structured_commands)

_KINDS = {
    commands.THING_UPDATE: (str,),
    commands.THING_DETACH: (str,),
    commands.LAST_VALUES_UPDATE: (bytes,),
    commands.TIMEZONE_DOWN: (int, int),
    commands.OTA_UPDATE_DOWN: (bytes, str, bytes, bytes),
}


def check_command(result):
    tag, fields = result
    assert tag in _KINDS, hex(tag)
    kinds = _KINDS[tag]
    assert isinstance(fields, tuple) and len(fields) == len(kinds)
    for f, k in zip(fields, kinds):
        assert type(f) is k, (tag, fields)
    if tag in (commands.THING_UPDATE, commands.THING_DETACH):
        tid = fields[0]
        assert len(tid) <= 128
        for ch in "+#/\x00":
            assert ch not in tid, tid
    if tag == commands.OTA_UPDATE_DOWN:
        assert len(fields[0]) == 16 and len(fields[2]) == 32 and len(fields[3]) == 32


@FUZZ
@given(command_inputs, st.randoms(use_true_random=False))
def test_decode_down(data, rng):
    for case in fuzzlib.cases(data, rng):
        for _name, loads in BACKENDS:
            result, err = with_backend(loads, commands.decode_down, case)
            if err is None:
                check_command(result)


def test_unsafe_thing_ids_are_refused():
    for tid in BAD_IDS:
        for tag in (commands.THING_UPDATE, commands.THING_DETACH):
            data = dumps(cbor2.CBORTag(tag, [tid]))
            for _name, loads in BACKENDS:
                _, err = with_backend(loads, commands.decode_down, data)
                assert err is not None, (tid, tag)
