# Certificate and key files, on both runtimes: read them, tell PEM from DER,
# convert between the two, and measure a DER element.  A leaf module: the TLS
# set-up (tls.py) and the hardware-key modules (pkcs11.py, se05x.py) share it.

from binascii import a2b_base64, b2a_base64

from .errors import ConfigError


def pem_to_der(data):
    """Return the DER bytes of the first PEM block in data (bytes)."""
    begin = data.find(b"-----BEGIN")
    if begin < 0:
        return data  # already DER
    start = data.find(b"\n", begin) + 1
    end = data.find(b"-----END", start)
    if start <= 0 or end < 0:
        raise ConfigError("malformed PEM data")
    return a2b_base64(data[start:end].replace(b"\r", b"").replace(b"\n", b""))


def read_file(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError("cannot read %s file %s: %s" % (what, path, e))


def check_pem_or_der(data, path, what, label):
    """A configuration mistake found before any connect: `data` (read from
    `path`) must be PEM with `label` in its BEGIN line, or DER (an ASN.1
    SEQUENCE).  Raises ConfigError naming the file and what is wrong."""
    begin = data.find(b"-----BEGIN ")
    if begin >= 0:
        line_end = data.find(b"-----", begin + 11)
        found = data[begin + 11:line_end] if line_end > 0 else b"?"
        if label not in found:
            raise ConfigError("%s file %s holds a PEM %s, not a %s"
                              % (what, path, found.decode("ascii", "replace"), label.decode()))
    elif not data or data[0] != 0x30:
        raise ConfigError("%s file %s is neither PEM nor DER (is it the right file?)" % (what, path))


def der_length(data, what):
    """Length of the DER element at the start of data (to split or trim); `what`
    names the data in the ConfigError raised when it is not DER."""
    if len(data) < 2:
        raise ConfigError("%s is empty" % what)
    n = data[1]
    if n < 0x80:
        return 2 + n
    count = n & 0x7F
    if count == 0 or count > 3 or len(data) < 2 + count:
        raise ConfigError("%s is not DER" % what)
    return 2 + count + int.from_bytes(bytes(data[2:2 + count]), "big")


def as_pem(data, label):
    if b"-----BEGIN" in data:
        return data if data.endswith(b"\n") else data + b"\n"
    body = b2a_base64(data).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN " + label + b"-----\n" + b"\n".join(lines) + b"\n-----END " + label + b"-----\n"


def der_key_label(key):
    # SEC1 EC keys start with version 1; PKCS#8 with version 0 and an
    # AlgorithmIdentifier sequence; PKCS#1 RSA with version 0 and an integer.
    at = 2 + (key[1] & 0x7F if key[1] & 0x80 else 0) if len(key) > 2 else 0
    version = key[at:at + 3]
    if version == b"\x02\x01\x01":
        return b"EC PRIVATE KEY"
    if version == b"\x02\x01\x00" and key[at + 3:at + 4] == b"\x02":
        return b"RSA PRIVATE KEY"
    return b"PRIVATE KEY"


_SUBJECT_ALT_NAME = b"\x06\x03\x55\x1d\x11"  # DER of the OID 2.5.29.17


def _item(der, at):
    # (tag, first byte of the value, end of the value) of the DER item at `at`.
    tag = der[at]
    n = der[at + 1]
    at += 2
    if n & 0x80:
        size = n & 0x7F
        n = 0
        for i in range(at, at + size):
            n = (n << 8) | der[i]
        at += size
    if at + n > len(der):
        raise ValueError("DER item runs past the end")
    return tag, at, at + n


def has_subject_alt_name(der):
    """Does the DER certificate `der` (bytes or memoryview) carry a subjectAltName extension?

    Certificate = SEQUENCE {tbsCertificate SEQUENCE {..., [3] extensions}, ...};
    each extension is a SEQUENCE starting with its OID.
    """
    _tag, at, _end = _item(der, 0)
    _tag, at, end = _item(der, at)  # tbsCertificate
    while at < end:
        tag, value, after = _item(der, at)
        if tag == 0xA3:  # [3] extensions: one SEQUENCE of Extension
            _tag, at, end = _item(der, value)
            while at < end:
                _tag, ext, after = _item(der, at)
                if after - ext >= 5 and _starts_with(der, ext, _SUBJECT_ALT_NAME):
                    return True
                at = after
            return False
        at = after
    return False


def _starts_with(der, at, prefix):
    # Byte by byte: MicroPython cannot compare a memoryview with bytes.
    for i in range(len(prefix)):
        if der[at + i] != prefix[i]:
            return False
    return True
