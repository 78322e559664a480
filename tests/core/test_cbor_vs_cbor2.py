# Cross-checks of the project's CBOR codec against cbor2 (CPython only).
# Plain functions: under MicroPython (no cbor2) each returns at once.

from arduino_iot_cloud import cbor


def _cbor2():
    try:
        import cbor2
    except ImportError:
        return None
    return cbor2


def _corpus(cbor2):
    # Values both codecs encode the same way (no semantic tags such as 0-5,
    # 24-37 or 55799, which cbor2 turns into other Python types).
    return [
        0, 1, 23, 24, 255, 256, 65535, 65536, 4294967295, 4294967296, 2 ** 63, 2 ** 64 - 1,
        -1, -24, -25, -256, -257, -65537, -4294967296, -(2 ** 64),
        0.0, -0.0, 1.5, 21.5, -4.1, 1e300, 3.4028234663852886e38, 2.0 ** -24, float("inf"), -float("inf"),
        True, False, None,
        "", "a", "temp", "\u00fc\u6c34\U00010151", "x" * 23, "x" * 24, "y" * 256, "z" * 70000,
        b"", b"\x00", bytes(range(256)), b"\xff" * 65536,
        [], [1, [2, [3, [4]]]], list(range(30)), [None] * 300,
        {}, {0: "temp", 2: 21.5}, {"n": "sw1", "vb": True}, {-2: "base/", 0: "x", 2: 1},
        [{0: "p%d" % i, 2: i * 0.25} for i in range(40)],
        (cbor.Tag(0x010700, ["1.4.1-async"]), cbor2.CBORTag(0x010700, ["1.4.1-async"])),
        (cbor.Tag(0x010600, [b"\x80"]), cbor2.CBORTag(0x010600, [b"\x80"])),
        (cbor.Tag(0x010900, [3600, 0]), cbor2.CBORTag(0x010900, [3600, 0])),
        (cbor.Tag(2 ** 64 - 1, "x"), cbor2.CBORTag(2 ** 64 - 1, "x")),
        (cbor.Simple(16), cbor2.CBORSimpleValue(16)),
        (cbor.Simple(255), cbor2.CBORSimpleValue(255)),
        (cbor.undefined, cbor2.undefined),
    ]


def _same(ours, theirs):
    # Structural equality across the two codecs' types.
    if hasattr(ours, "tag"):
        return ours.tag == theirs.tag and _same(ours.value, theirs.value)
    if isinstance(ours, cbor.Simple):
        return ours.value == theirs.value
    if ours is cbor.undefined:
        return repr(theirs) == "undefined"
    if isinstance(ours, (list, tuple)):
        return (isinstance(theirs, (list, tuple)) and len(ours) == len(theirs)
                and all(_same(a, b) for a, b in zip(ours, theirs)))
    if isinstance(ours, dict):
        return (isinstance(theirs, dict) and list(ours) == list(theirs)
                and all(_same(ours[k], theirs[k]) for k in ours))
    if isinstance(ours, float) and ours != ours:
        return theirs != theirs
    return type(ours) is type(theirs) and ours == theirs and str(ours) == str(theirs)


def test_encodings_match_byte_for_byte():
    cbor2 = _cbor2()
    if cbor2 is None:
        return
    for item in _corpus(cbor2):
        ours, theirs = item if isinstance(item, tuple) else (item, item)
        a = cbor.dumps(ours)
        b = cbor2.dumps(theirs)
        assert a == b, "%r: ours %s, cbor2 %s" % (ours, a.hex()[:80], b.hex()[:80])
    assert cbor.dumps(float("nan")) == cbor2.dumps(float("nan"))


def test_cbor2_reads_ours_and_we_read_cbor2():
    cbor2 = _cbor2()
    if cbor2 is None:
        return
    for item in _corpus(cbor2):
        ours, theirs = item if isinstance(item, tuple) else (item, item)
        assert _same(ours, cbor2.loads(cbor.dumps(ours))), repr(ours)
        assert _same(cbor.loads(cbor2.dumps(theirs)), theirs if isinstance(item, tuple) else cbor2.loads(cbor2.dumps(theirs))), repr(ours)


def test_cbor2_canonical_and_float_widths():
    # cbor2's canonical mode writes the shortest float; we must read every width.
    cbor2 = _cbor2()
    if cbor2 is None:
        return
    for x in (0.0, -0.0, 1.0, 1.5, 65504.0, 2.0 ** -24, 100000.0, 21.5, 1.1, 1e300, -4.0,
              float("inf"), -float("inf")):
        data = cbor2.dumps(x, canonical=True)
        got = cbor.loads(data)
        assert got == x and str(got) == str(x), "%s -> %r, want %r" % (data.hex(), got, x)
    assert cbor.loads(cbor2.dumps(float("nan"), canonical=True)) != cbor.loads(b"\xf9\x7e\x00")


def test_indefinite_streams_from_cbor2():
    cbor2 = _cbor2()
    if cbor2 is None:
        return
    import io

    fp = io.BytesIO()
    enc = cbor2.CBOREncoder(fp)
    # Build an indefinite array of indefinite maps and chunked strings by hand
    # around cbor2-encoded items.
    fp.write(b"\x9f")
    for i in range(3):
        fp.write(b"\xbf")
        enc.encode(0)
        fp.write(b"\x7f")
        enc.encode("na")
        enc.encode("me%d" % i)
        fp.write(b"\xff")
        enc.encode(2)
        enc.encode(i + 0.5)
        fp.write(b"\xff")
    fp.write(b"\xff")
    data = fp.getvalue()
    want = [{0: "name%d" % i, 2: i + 0.5} for i in range(3)]
    assert cbor2.loads(data) == want
    assert cbor.loads(data) == want


def test_senml_and_commands_with_own_codec():
    # compat picks cbor2 on CPython, so test_senml and test_commands exercise
    # cbor2 there; run them again with the project's codec swapped in.
    if _cbor2() is None:
        return  # compat already uses the project's codec
    from arduino_iot_cloud import compat
    import test_commands
    import test_senml

    saved = (compat.cbor_dumps, compat.cbor_loads, compat.CBORTag)
    compat.cbor_dumps, compat.cbor_loads, compat.CBORTag = cbor.dumps, cbor.loads, cbor.Tag
    try:
        for mod in (test_senml, test_commands):
            for name in sorted(dir(mod)):
                if name.startswith("test_"):
                    getattr(mod, name)()
    finally:
        compat.cbor_dumps, compat.cbor_loads, compat.CBORTag = saved
