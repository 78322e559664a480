# SE05x secure-element keys (se05x.py), tested with a TEST DOUBLE of the
# board's `se05x` module (tests/core/se05x_double/se05x.py): no SE05x
# hardware is available here.  What is real: the reference key bytes, the
# URI parsing, the sign-callback routing, the certificate read and trim, and
# the refusal of an ssl context that cannot take a sign callback.  Runs under
# pytest and `micropython tests/mpy_run.py`.

import sys

from util import raises, tohex

from arduino_iot_cloud import se05x as se
from arduino_iot_cloud.errors import ConfigError


def _dirname(path):
    i = path.rfind("/")
    return path[:i] if i > 0 else "."


_DOUBLE_DIR = _dirname(__file__) + "/se05x_double"
_MARKER = b"\xa5\xa6\xb5\xb6\xa5\xa6\xb5\xb6"
# A stand-in DER certificate: a SEQUENCE of 300 bytes, padded like an SE
# object that is larger than the certificate it holds.
_CERT = b"\x30\x82\x01\x2c" + bytes(range(256)) + bytes(44)


def _double():
    """Import the test double as `se05x` and reset it and the library's device cache."""
    if _DOUBLE_DIR not in sys.path:
        sys.path.insert(0, _DOUBLE_DIR)
    import se05x

    se05x.reset()
    del se._device[:]
    return se05x


class _Inner:
    """Stands for MicroPython's tls.SSLContext on a board (takes the callback)."""


class _FakeContext:
    """Stands for ssl.SSLContext on a board: records load_cert_chain."""

    def __init__(self):
        self._context = _Inner()
        self.loaded = None

    def load_cert_chain(self, cert, key):
        self.loaded = (cert, key)


def test_parse_uri():
    assert se.parse_uri("se05x:token=0x00000064") == (0x64, None)
    assert se.parse_uri("se05x:token=0x65;size=500") == (0x65, 500)
    assert se.parse_uri("se05x:token=100") == (100, None)
    for bad in ("se05x:", "se05x:token=", "se05x:token=0xZZ", "se05x:token=0x1;colour=red",
                "pkcs11:token=x", "se05x:token=0x100000000", "se05x:size=4"):
        raises(ConfigError, se.parse_uri, bad)


def test_reference_key_layout():
    key = se.reference_key(0x64)
    # PKCS#8 PrivateKeyInfo: version 0, id-ecPublicKey + prime256v1, ECPrivateKey(version 1, d).
    assert tohex(key[:2]) == "3041"
    assert tohex(key[2:5]) == "020100"
    assert tohex(key[5:26]) == "301306072a8648ce3d020106082a8648ce3d030107"
    assert tohex(key[26:35]) == "0427302502010104" "20"
    d = key[35:]
    assert len(d) == 32 and d[:8] == _MARKER and d[8:28] == bytes(20)
    assert d[28:] == b"\x00\x00\x00\x64"
    assert se.referenced_object(d) == 0x64
    assert se.reference_key(0xFFFFFFFF)[-4:] == b"\xff\xff\xff\xff"


def test_reference_key_parses_as_ec_key_cpython():
    # Independent cross-check where the `cryptography` package exists (CPython).
    try:
        from cryptography.hazmat.primitives.serialization import load_der_private_key
    except ImportError:
        return
    key = load_der_private_key(se.reference_key(0x1234), password=None)
    assert key.curve.name == "secp256r1"
    value = key.private_numbers().private_value
    assert value.to_bytes(32, "big") == _MARKER + bytes(20) + b"\x00\x00\x12\x34"


def test_ordinary_key_is_left_to_mbedtls():
    double = _double()
    assert se.referenced_object(b"\x01" * 32) is None
    assert se._sign_callback(b"\x01" * 32, b"digest") is None
    assert not [c for c in double.calls if c[0] == "sign"]


def test_load_se05x_key_and_certificate_from_the_chip():
    double = _double()
    double.objects[0x65] = _CERT + b"\xff" * (412 - len(_CERT))
    ctx = _FakeContext()
    se.load_se05x(ctx, "se05x:token=0x00000064", "se05x:token=0x00000065")
    cert, key = ctx.loaded
    assert cert == _CERT  # trimmed to its DER length
    assert key == se.reference_key(0x64)
    assert ("read", 0x65, 412) in double.calls
    assert double.calls.count(("init",)) == 1
    # mbedTLS signing with the reference key lands in the chip, object 0x64.
    callback = ctx._context.ecdsa_sign_callback
    digest = bytes(range(32))
    sig = callback(key[-32:], digest)
    assert sig == b"FAKE-SIGNATURE:" + b"\x00\x00\x00\x64" + digest
    assert double.calls[-1] == ("sign", 0x64, digest)
    # A second context reuses the one device object.
    se.load_se05x(_FakeContext(), "se05x:token=0x64", "se05x:token=0x65;size=304")
    assert double.calls.count(("init",)) == 1
    assert double.calls[-1] == ("read", 0x65, 304)


def test_certificate_from_a_file():
    _double()
    path = "/tmp/_test_se05x_cert.der" if sys.platform != "win32" else "cert.der"
    with open(path, "wb") as f:
        f.write(_CERT)
    ctx = _FakeContext()
    se.load_se05x(ctx, "se05x:token=0x64", path)
    assert ctx.loaded[0] == _CERT


def test_certificate_too_long_for_the_read():
    double = _double()
    double.objects[0x65] = _CERT[:200]
    e = raises(ConfigError, se.load_se05x, _FakeContext(), "se05x:token=0x64", "se05x:token=0x65")
    assert "longer" in str(e)


def test_context_without_sign_callback_is_refused():
    # The real ssl of this runtime (CPython, or the unix port) has no SE05x
    # sign callback: that must be a clear error, not a silent software key.
    _double()
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    e = raises(ConfigError, se.load_se05x, ctx, "se05x:token=0x64", "se05x:token=0x65")
    assert "callback" in str(e) or "SSLContext" in str(e)


def test_missing_se05x_module():
    _double()
    sys.path.remove(_DOUBLE_DIR)
    saved = sys.modules.pop("se05x", None)
    try:
        e = raises(ConfigError, se.load_se05x, _FakeContext(), "se05x:token=0x64", "se05x:token=0x65")
        assert "se05x module" in str(e)
    finally:
        if saved is not None:
            sys.modules["se05x"] = saved


def test_tlsconfig_routes_se05x_uris_here():
    # The hook in tls.py: an se05x: keyfile reaches load_se05x, which refuses
    # this runtime's ssl (no sign callback) before any socket is touched.
    from arduino_iot_cloud.tls import TLSConfig

    double = _double()
    double.objects[0x65] = _CERT
    tls = TLSConfig({"keyfile": "se05x:token=0x00000064", "certfile": "se05x:token=0x00000065"})
    assert tls.hardware == "se05x"
    raises(ConfigError, tls.wrap, None, "localhost")
