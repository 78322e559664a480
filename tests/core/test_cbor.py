# The project's own CBOR codec.  Plain functions: pytest and tests/mpy_run.py
# (MicroPython) both run them.  Vectors are from RFC 8949 appendix A and
# docs/protocol.md, written out by hand, not produced by the encoder under test.

from arduino_iot_cloud import cbor
from arduino_iot_cloud.cbor import Simple, Tag, dumps, loads, undefined
from arduino_iot_cloud.errors import DecodeError, LocalError
from util import is_nan, raises, tohex, unhex

# (value, canonical encoding) pairs that our encoder must produce exactly
# and our decoder must read back to an equal value.
ROUND_TRIP = [
    (0, "00"),
    (1, "01"),
    (10, "0a"),
    (23, "17"),
    (24, "1818"),
    (25, "1819"),
    (100, "1864"),
    (255, "18ff"),
    (256, "190100"),
    (1000, "1903e8"),
    (65535, "19ffff"),
    (65536, "1a00010000"),
    (1000000, "1a000f4240"),
    (4294967295, "1affffffff"),
    (4294967296, "1b0000000100000000"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-1, "20"),
    (-10, "29"),
    (-24, "37"),
    (-25, "3818"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (-4294967296, "3affffffff"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (1.1, "fb3ff199999999999a"),
    (21.5, "fb4035800000000000"),
    (-4.1, "fbc010666666666666"),
    (1.0e300, "fb7e37e43c8800759c"),
    (0.0, "fb0000000000000000"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (undefined, "f7"),
    (Simple(16), "f0"),
    (Simple(255), "f8ff"),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ("\"\\", "62225c"),
    ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ("\U00010151", "64f0908591"),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    ({1: 2, 3: 4}, "a201020304"),
    ({"a": 1}, "a1616101"),
    (["a", {"b": "c"}], "826161a161626163"),
    (Tag(1, 1363896240), "c11a514b67b0"),
    (Tag(32, "http://www.example.com"), "d82076687474703a2f2f7777772e6578616d706c652e636f6d"),
    (Tag(0x010700, ["1.4.1-async"]), "da00010700816b312e342e312d6173796e63"),
    (Tag(0x011000, ["x"]), "da00011000816178"),
    (Tag(18446744073709551615, 0), "dbffffffffffffffff00"),
]

# Encodings our encoder does not produce but the decoder must accept.
DECODE_ONLY = [
    ("f90000", 0.0),
    ("f93c00", 1.0),
    ("f93e00", 1.5),
    ("f97bff", 65504.0),
    ("f90400", 0.00006103515625),
    ("f9c400", -4.0),
    ("f93555", 0.333251953125),
    ("fa47c35000", 100000.0),
    ("fa41ac0000", 21.5),
    ("fa7f7fffff", 3.4028234663852886e38),
    ("f97c00", float("inf")),
    ("f9fc00", -float("inf")),
    ("fa7f800000", float("inf")),
    ("fbfff0000000000000", -float("inf")),
    ("1800", 0),  # non-shortest forms are well-formed
    ("1b0000000000000001", 1),
    ("5f42010243030405ff", b"\x01\x02\x03\x04\x05"),
    ("5fff", b""),
    ("7f657374726561646d696e67ff", "streaming"),
    ("7f62c3bc6161ff", "\u00fca"),
    ("9fff", []),
    ("9f018202039f0405ffff", [1, [2, 3], [4, 5]]),
    ("9f01820203820405ff", [1, [2, 3], [4, 5]]),
    ("83018202039f0405ff", [1, [2, 3], [4, 5]]),
    ("83019f0203ff820405", [1, [2, 3], [4, 5]]),
    ("9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff", list(range(1, 26))),
    ("bf61610161629f0203ffff", {"a": 1, "b": [2, 3]}),
    ("826161bf61626163ff", ["a", {"b": "c"}]),
    ("bf6346756ef563416d7421ff", {"Fun": True, "Amt": -2}),
    ("a2616101616102", {"a": 2}),  # duplicate key: the last one wins
    ("64f48fbfbf", "\U0010ffff"),  # edges of the UTF-8 checks
    ("63ee8080", "\ue000"),
    ("63ed9fbf", "\ud7ff"),
    ("63e0a080", "\u0800"),
    ("62c280", "\u0080"),
    ("64f0908080", "\U00010000"),
    ("e0", Simple(0)),
    ("f820", Simple(32)),
]

# Malformed inputs: (hex, why).
MALFORMED = [
    ("", "empty"),
    ("1c", "reserved ai 28, uint"),
    ("3d", "reserved ai 29, nint"),
    ("5e", "reserved ai 30, bytes"),
    ("7c", "reserved ai 28, text"),
    ("9d", "reserved ai 29, array"),
    ("be", "reserved ai 30, map"),
    ("dc00", "reserved ai 28, tag"),
    ("fc", "reserved ai 28, simple"),
    ("fe", "reserved ai 30, simple"),
    ("1f", "indefinite uint"),
    ("3f", "indefinite nint"),
    ("df00", "indefinite tag"),
    ("ff", "break at top level"),
    ("81ff", "break inside a definite array"),
    ("a1ff", "break as a definite map key"),
    ("bf01ff", "indefinite map ends after a key"),
    ("9f01", "indefinite array never ends"),
    ("5f6161ff", "text chunk inside a byte string"),
    ("7f4161ff", "byte chunk inside a text string"),
    ("5f5fffff", "nested indefinite chunk"),
    ("5f01ff", "int chunk"),
    ("62c328", "bad UTF-8"),
    ("61ff", "bad UTF-8 byte"),
    ("7f61c3ff", "chunk ends mid character"),
    ("62c0af", "overlong UTF-8 for '/'"),
    ("63e080af", "three-byte overlong UTF-8"),
    ("63eda080", "UTF-8 surrogate"),
    ("64f4908080", "UTF-8 above U+10FFFF"),
    ("64f0808080", "four-byte overlong UTF-8"),
    ("61c1", "C1 lead byte"),
    ("6180", "lone continuation byte"),
    ("64f5808080", "F5 lead byte"),
    ("f818", "two-byte simple value below 32"),
    ("f800", "two-byte simple value 0"),
    ("a18001", "array as map key"),
    ("a1a00101", "map as map key"),
    ("9b00000000ffffffff", "array longer than the input"),
    ("9bffffffffffffffff", "array of 2**64-1 items"),
    ("bbffffffffffffffff", "map of 2**64-1 entries"),
    ("ba7fffffff00", "map longer than the input"),
    ("5bffffffffffffffff", "byte string of 2**64-1 bytes"),
    ("7a7fffffff61", "text longer than the input"),
    ("8201", "array one item short"),
    ("a20102", "map one entry short"),
    ("0000", "trailing byte"),
    ("80ff", "trailing break"),
    ("f4f4", "two items"),
]


def _check_decode_error(data):
    # Whatever loads raises for bad input must be DecodeError, nothing else.
    try:
        loads(data)
    except DecodeError:
        return
    except Exception as e:
        raise AssertionError("%s: %s raised %s: %s" % (tohex(data), "loads", type(e).__name__, e))
    raise AssertionError("%s: loads accepted malformed input" % tohex(data))


def test_encode_vectors():
    for value, h in ROUND_TRIP:
        got = tohex(dumps(value))
        if isinstance(value, dict) and len(value) > 1 and got != h:
            # Map entries follow dict iteration order, which MicroPython
            # does not keep as insertion order: same entries, other order.
            assert len(got) == len(h) and loads(unhex(got)) == value, got
            continue
        assert got == h, "dumps(%r) = %s, want %s" % (value, got, h)


def test_decode_vectors():
    for value, h in ROUND_TRIP:
        got = loads(unhex(h))
        assert got == value, "loads(%s) = %r, want %r" % (h, got, value)
        if value is not None and not isinstance(value, (Tag, Simple)) and value is not undefined:
            assert type(got) is type(value), h


def test_decode_only_vectors():
    for h, value in DECODE_ONLY:
        got = loads(unhex(h))
        assert got == value, "loads(%s) = %r, want %r" % (h, got, value)
        assert type(got) is type(value), h


def test_half_floats_by_hand():
    assert loads(unhex("f90001")) == 2.0 ** -24  # smallest subnormal
    assert loads(unhex("f903ff")) == 1023 * 2.0 ** -24  # largest subnormal
    neg_zero = loads(unhex("f98000"))
    assert neg_zero == 0.0 and str(neg_zero) == "-0.0"
    assert is_nan(loads(unhex("f97e00")))
    assert is_nan(loads(unhex("f97c01")))
    assert is_nan(loads(unhex("fa7fc00000")))
    assert is_nan(loads(unhex("fb7ff8000000000000")))


def test_special_floats_encode_as_half():
    assert tohex(dumps(float("nan"))) == "f97e00"
    assert tohex(dumps(float("inf"))) == "f97c00"
    assert tohex(dumps(-float("inf"))) == "f9fc00"
    assert tohex(dumps(-0.0)) == "fb8000000000000000"


def test_bytes_like_input_and_output():
    assert loads(bytearray(b"\x43abc")) == b"abc"
    assert loads(memoryview(b"\x82\x01\x02")) == [1, 2]
    assert type(loads(b"\x43abc")) is bytes
    assert tohex(dumps(bytearray(b"ab"))) == "426162"
    assert tohex(dumps(memoryview(b"ab"))) == "426162"
    assert tohex(dumps((1, 2))) == "820102"


def test_uint32_max_survives():
    assert loads(dumps(4294967295)) == 4294967295
    assert loads(unhex("1affffffff")) == 4294967295
    assert loads(unhex("1b00000000ffffffff")) == 4294967295


def test_tag_and_simple_objects():
    t = loads(unhex("da00010700816b312e342e312d6173796e63"))
    assert t.tag == 0x010700 and t.value == ["1.4.1-async"]
    assert t == Tag(0x010700, ["1.4.1-async"])
    assert t != Tag(0x010701, ["1.4.1-async"])
    assert t != Tag(0x010700, ["1.4.1"])
    assert repr(Tag(1, "x")) == "Tag(1, 'x')"
    assert Simple(5) == Simple(5) and Simple(5) != Simple(6)
    assert repr(Simple(5)) == "Simple(5)"
    assert repr(undefined) == "undefined"
    assert {Simple(3): 1}[Simple(3)] == 1
    assert loads(unhex("a1f001")) == {Simple(16): 1}


def test_encode_duck_typed_tag():
    class Other:
        def __init__(self, tag, value):
            self.tag = tag
            self.value = value

    assert tohex(dumps(Other(0x010500, []))) == "da0001050080"


def test_malformed_inputs_raise_decode_error():
    for h, why in MALFORMED:
        try:
            loads(unhex(h))
        except DecodeError:
            continue
        except Exception as e:
            raise AssertionError("%s (%s) raised %s: %s" % (h, why, type(e).__name__, e))
        raise AssertionError("%s (%s) was accepted" % (h, why))


def test_every_truncation_raises_decode_error():
    vectors = [h for _, h in ROUND_TRIP] + [h for h, _ in DECODE_ONLY]
    for h in vectors:
        data = unhex(h)
        for n in range(len(data)):
            _check_decode_error(data[:n])


def test_trailing_bytes_rejected():
    vectors = [h for _, h in ROUND_TRIP] + [h for h, _ in DECODE_ONLY]
    for h in vectors:
        for extra in (b"\x00", b"\xff", b"\x81"):
            e = raises(DecodeError, loads, unhex(h) + extra)
            assert "trailing" in str(e), h


def test_nesting_limit():
    limit = cbor.MAX_DEPTH
    assert limit == 16
    ok = b"\x81" * limit + b"\x00"
    value = loads(ok)
    for _ in range(limit):
        value = value[0]
    assert value == 0
    raises(DecodeError, loads, b"\x81" * (limit + 1) + b"\x00")
    raises(DecodeError, loads, b"\x9f" * (limit + 1))
    raises(DecodeError, loads, b"\xa1\x00" * (limit + 1) + b"\x00")
    raises(DecodeError, loads, b"\xc1" * (limit + 1) + b"\x00")
    # Very deep input fails early with DecodeError, not RecursionError.
    raises(DecodeError, loads, b"\x81" * 10000 + b"\x00")
    raises(DecodeError, loads, b"\x9f" * 10000)
    # Strings and ints do not count as levels.
    assert loads(b"\x81" * (limit - 1) + b"\x82\x61a\x41b") is not None


def test_declared_length_does_not_allocate():
    # 2**32-1 items declared, 3 bytes present: rejected before allocating.
    e = raises(DecodeError, loads, unhex("9affffffff010203"))
    assert "exceeds" in str(e)
    raises(DecodeError, loads, unhex("baffffffff0102"))
    raises(DecodeError, loads, unhex("5affffffff0102"))


def test_encoder_rejects_unsupported():
    raises(LocalError, dumps, object())
    raises(LocalError, dumps, {1, 2})
    raises(LocalError, dumps, 18446744073709551616)
    raises(LocalError, dumps, -18446744073709551617)
    raises(LocalError, dumps, Simple(24))
    raises(LocalError, dumps, Simple(20))
    raises(LocalError, dumps, Tag(-1, 0))
    deep = 0
    for _ in range(cbor.MAX_DEPTH + 1):
        deep = [deep]
    raises(LocalError, dumps, deep)
    cyclic = []
    cyclic.append(cyclic)
    raises(LocalError, dumps, cyclic)


def test_roundtrip_nested_corpus():
    corpus = [
        [{0: "temp", 2: 21.5}, {0: "sw1", 4: True}],
        {"k": [b"\x00" * 300, "x" * 70000, -(2 ** 40)]},
        Tag(0x010600, [dumps([{0: "a", 2: 1}])]),
        [None, undefined, Simple(0), Simple(19), Simple(32)],
    ]
    for value in corpus:
        assert loads(dumps(value)) == value
