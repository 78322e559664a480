# CBOR decoders under random, mutated and structured input: compat.cbor_loads
# (cbor2 on CPython) and the project's own cbor.loads (the MicroPython codec)
# raise nothing but DecodeError, return promptly, and do not allocate beyond
# the input's size whatever length a head claims.

import binascii
import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

import fuzzlib
from arduino_iot_cloud import cbor, compat
from arduino_iot_cloud.errors import DecodeError
from fuzzlib import FUZZ, bounded_call, cases, cbor_values, dumps, mutated, raw_bytes


def _h(s):
    return binascii.unhexlify(s.replace(" ", ""))


CORPUS = [
    _h("81 A2 00 64 74656D70 02 FB 4035800000000000"),
    _h("81 A2 00 63 737731 04 F5"),
    _h("DA 00010700 81 6B 312E342E312D6173796E63"),
    _h("9F A2 00 63 6C6174 02 FA 40000000 A2 00 63 6C6F6E 02 FA 40400000 FF"),
    _h("84 A2 00 61 61 02 F9 3E00 A2 00 61 62 02 FA 41AC0000 A2 00 61 63 02 FB 4035800000000000 A2 00 61 64 02 02"),
    _h("5F 42 0102 41 03 FF"),
    _h("7F 62 6869 61 21 FF"),
    _h("BF 61 61 01 61 62 9F 02 03 FF FF"),
    _h("C2 49 010000000000000000"),
    _h("1B FFFFFFFFFFFFFFFF"),
    _h("3B FFFFFFFFFFFFFFFF"),
    _h("F9 7E00"),
    _h("F8 FF"),
    _h("F7"),
    _h("D8 1C 81 D8 1D 00"),
    dumps([{"n": "x", "vs": "hello"}, {"n": "y", "vd": b"\x00\x01"}]),
    dumps({0: "thing_id", 3: "7a1c2e44-0000-4000-8000-0000000000aa"}),
    dumps([-1, 2 ** 64 - 1, 1.5, None, True, False, "", b""]),
]


def _check(fn, data):
    result, err = bounded_call(fn, DecodeError, data)
    if err is not None:
        assert str(err)  # a readable message
    return result


inputs = st.one_of(raw_bytes(), mutated(CORPUS), cbor_values().map(dumps))


@FUZZ
@given(inputs, st.randoms(use_true_random=False))
def test_cbor_decoders(data, rng):
    # Both decoders, on the same EXAMPLES cases.
    for case in cases(data, rng):
        _check(compat.cbor_loads, case)
        _check(cbor.loads, case)


# Plain data (no tags, no NaN): both decoders agree with each other.
plain = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 64), 2 ** 64 - 1),
              st.floats(allow_nan=False), st.text(max_size=10), st.binary(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.one_of(st.integers(-10, 10), st.text(max_size=5)), inner,
                                            max_size=5)),
    max_leaves=12)


def _norm(x):
    # cbor2 decodes tagged arrays as tuples and our codec as lists; dict keys
    # may be lists->tuples in cbor2; compare structurally.
    if isinstance(x, (list, tuple)):
        return [_norm(i) for i in x]
    if isinstance(x, dict):
        return sorted(((repr(_norm(k)), _norm(v)) for k, v in x.items()), key=lambda kv: kv[0])
    if hasattr(x, "tag") and hasattr(x, "value"):
        return ("tag", x.tag, _norm(x.value))
    return x


@fuzzlib.fewer(20)
@given(plain)
def test_decoders_agree_on_plain_data(value):
    data = dumps(value)
    if not data:
        return
    a = _check(cbor.loads, data)
    b = _check(compat.cbor_loads, data)
    assert _norm(a) == _norm(b), (value, a, b)


# Heads that claim huge lengths, with a short tail: no allocation follows the claim.
@fuzzlib.fewer(10)
@given(st.sampled_from((2, 3, 4, 5)), st.integers(2 ** 16, 2 ** 64 - 1), st.binary(max_size=64),
       st.booleans())
def test_huge_length_claims_allocate_nothing(major, n, tail, nested):
    head = bytes((major << 5 | 27,)) + n.to_bytes(8, "big")
    data = (b"\x81" * 10 if nested else b"") + head + tail
    for fn in (cbor.loads, compat.cbor_loads):
        tracemalloc.start()
        try:
            _check(fn, data)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 256 * 1024, (fn.__module__, peak)


def test_deep_nesting_is_refused_not_a_crash():
    for data in (b"\x81" * 100000 + b"\x00", b"\x9f" * 100000, b"\xa1\x00" * 50000 + b"\x00",
                 b"\xc1" * 100000 + b"\x00"):
        for fn in (cbor.loads, compat.cbor_loads):
            _, err = bounded_call(fn, DecodeError, data)
            assert err is not None
