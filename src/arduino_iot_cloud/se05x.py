# TLS with a key held in an NXP SE05x secure element (MicroPython boards).
#
# Theory of operation.  Boards with an SE05x (Arduino Portenta, Opta, Nicla
# Vision...) ship a MicroPython build whose `se05x` module talks to the chip
# (SE05X().sign(object_id, digest), SE05X().read(object_id, size)) and whose
# TLS context accepts an `ecdsa_sign_callback`.  The private key never
# leaves the chip; mbedTLS is given a *reference key* instead: a well-formed
# EC P-256 key whose secret scalar is a marker,
#
#     A5 A6 B5 B6 A5 A6 B5 B6 | 20 zero bytes | object id (4 bytes, big endian)
#
# When mbedTLS signs with a key, it calls the callback with the key's scalar
# and the digest; a scalar carrying the marker is signed by the chip with the
# object named in its last four bytes, any other key is left to mbedTLS
# (the callback returns None).
#
# URIs: keyfile "se05x:token=0x00000064"; certfile "se05x:token=0x00000065"
# (optionally ";size=N", the bytes to read, 412 by default as in 1.4.1) or a
# PEM/DER certificate file.  The certificate read from the chip is trimmed to
# its DER length.

from .certfiles import der_length, pem_to_der, read_file
from .compat import getLogger
from .errors import ConfigError

log = getLogger("arduino_iot_cloud.se05x")

_MARKER = b"\xa5\xa6\xb5\xb6\xa5\xa6\xb5\xb6"
_CERT_READ_SIZE = 412
_OID_EC_PUBLIC_KEY = b"\x06\x07\x2a\x86\x48\xce\x3d\x02\x01"  # 1.2.840.10045.2.1
_OID_PRIME256V1 = b"\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07"  # 1.2.840.10045.3.1.7

_device = []  # the one SE05X object of this process, made on first use


def parse_uri(uri):
    """Return (object_id, size or None) from "se05x:token=0x...[;size=N]"."""
    if not isinstance(uri, str) or not uri.startswith("se05x:"):
        raise ConfigError("not an se05x: URI: %r" % (uri,))
    object_id = size = None
    for part in uri[6:].split(";"):
        name, _, value = part.partition("=")
        try:
            if name == "token":
                object_id = int(value, 16) if value[:2] in ("0x", "0X") else int(value)
            elif name == "size":
                size = int(value)
            else:
                raise ConfigError("unknown se05x: URI attribute %r" % name)
        except ValueError:
            raise ConfigError("bad number in se05x: URI %r" % uri)
    if object_id is None or not 0 <= object_id <= 0xFFFFFFFF:
        raise ConfigError("se05x: URI needs token=<object id, 32 bits>: %r" % uri)
    return object_id, size


def _der(tag, body):
    n = len(body)
    if n < 0x80:
        head = bytes((tag, n))
    elif n < 0x100:
        head = bytes((tag, 0x81, n))
    else:
        head = bytes((tag, 0x82, n >> 8, n & 0xFF))
    return head + body


def reference_key(object_id):
    """PKCS#8 DER of the reference key that names object_id in the chip."""
    scalar = _MARKER + bytes(20) + object_id.to_bytes(4, "big")
    ec_private_key = _der(0x30, b"\x02\x01\x01" + _der(0x04, scalar))
    algorithm = _der(0x30, _OID_EC_PUBLIC_KEY + _OID_PRIME256V1)
    return _der(0x30, b"\x02\x01\x00" + algorithm + _der(0x04, ec_private_key))


def referenced_object(key):
    """The object id a reference key scalar names, or None for an ordinary key."""
    key = bytes(key)
    if len(key) < 12 or key[:8] != _MARKER:
        return None
    return int.from_bytes(key[-4:], "big")


def device():
    """The board's SE05X object (created once)."""
    if not _device:
        try:
            import se05x
        except ImportError:
            raise ConfigError("se05x: keys need a MicroPython board with the se05x module")
        _device.append(se05x.SE05X())
    return _device[0]


def _sign_callback(key, digest):
    object_id = referenced_object(key)
    if object_id is None:
        return None  # not ours: mbedTLS signs with the key itself
    log.debug("signing in the secure element with object 0x%08x", object_id)
    return device().sign(object_id, digest)


def read_certificate(certfile):
    """DER certificate from an se05x: URI or a PEM/DER file."""
    if isinstance(certfile, str) and certfile.startswith("se05x:"):
        object_id, size = parse_uri(certfile)
        data = bytes(device().read(object_id, size or _CERT_READ_SIZE))
        n = der_length(data, "certificate in the secure element")
        if n > len(data):
            raise ConfigError("certificate in the secure element is longer than the %d bytes read"
                              % len(data))
        return data[:n]
    return pem_to_der(read_file(certfile, "certificate"))


def load_se05x(ctx, keyfile, certfile):
    """Put the SE05x reference key, its certificate and the sign callback on ctx."""
    object_id, _ = parse_uri(keyfile)
    inner = getattr(ctx, "_context", None)
    if inner is None:
        raise ConfigError("se05x: keys need MicroPython's ssl.SSLContext")
    try:
        inner.ecdsa_sign_callback = _sign_callback
    except AttributeError:
        raise ConfigError("this MicroPython build has no ECDSA sign callback for the secure element")
    device()
    ctx.load_cert_chain(read_certificate(certfile), reference_key(object_id))
    log.info("client key: secure element object 0x%08x", object_id)
