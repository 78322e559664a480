# The format of a sealed value (sans-I/O): OSCORE key derivation (RFC 8613
# section 3.2.1) and nonce (section 5.2), a COSE_Encrypt0 message (RFC 9052,
# tag 16) with AES-CCM-16-64-128 (COSE algorithm 10), and base64url text.
#
#   sealed text = base64url, no padding, of
#     16([ h'A1010A',                          protected: bstr(CBOR {1: 10})
#          {4: kid, 6: partial_iv},            unprotected: the sender id, the sequence number
#          ciphertext || 8-byte tag ])
#   AAD       = CBOR ["Encrypt0", protected, external_aad]
#   external_aad = CBOR ["sealed/1", property name]   (a value cannot move to another property)
#   plaintext = CBOR of the value (bool, int, float or str)
#
# The maps are written by hand so the bytes are the same on both runtimes
# (MicroPython dicts do not keep insertion order); lists go through the CBOR
# codec of compat.  Parsing is strict: anything else raises UnsealError.

import binascii

from ..compat import cbor_dumps, cbor_loads
from ..errors import DecodeError, UnsealError

ALG_AES_CCM_16_64_128 = 10
KEY_LEN = 16
NONCE_LEN = 13
MAX_ID_LEN = NONCE_LEN - 6  # 7 bytes
PROTECTED = b"\xa1\x01\x0a"  # {1: 10}
MAX_TEXT = 8192              # longest sealed text accepted, in characters

MALFORMED = "malformed"
NOT_AUTHENTIC = "not authentic"
WRONG_KID = "wrong kid"
OWN_MESSAGE = "own message"
REPLAY = "replay"
PLAIN_VALUE = "plain value"
STATE_NOT_SAVED = "state not saved"  # refused because its replay state could not be kept

_VALUE_TYPES = (bool, int, float, str)


def info(id_, kind, length, id_context=None):
    """The HKDF info of RFC 8613 section 3.2.1: [id, id_context, alg, type, L]."""
    return cbor_dumps([id_, id_context, ALG_AES_CCM_16_64_128, kind, length])


def derive(backend, master_secret, master_salt, sender_id, recipient_id, id_context=None):
    """(sender key, recipient key, common IV) of an OSCORE security context."""
    def hkdf(id_, kind, length):
        return backend.hkdf(master_salt, master_secret, info(id_, kind, length, id_context), length)

    return hkdf(sender_id, "Key", KEY_LEN), hkdf(recipient_id, "Key", KEY_LEN), hkdf(b"", "IV", NONCE_LEN)


def partial_iv(seq):
    """The sequence number big-endian without leading zero bytes; 0 is h'00'."""
    n = 1
    while seq >> (8 * n):
        n += 1
    return bytes((seq >> (8 * (n - 1 - i))) & 0xFF for i in range(n))


def nonce(common_iv, id_piv, piv):
    """RFC 8613 section 5.2: common IV XOR (len(id) || id padded to 7 || PIV padded to 5)."""
    block = bytes((len(id_piv),)) + bytes(MAX_ID_LEN - len(id_piv)) + id_piv + bytes(5 - len(piv)) + piv
    return bytes(common_iv[i] ^ block[i] for i in range(NONCE_LEN))


def external_aad(name):
    return cbor_dumps(["sealed/1", name])


def aad(name, protected=PROTECTED):
    return cbor_dumps(["Encrypt0", protected, external_aad(name)])


def encode(kid, piv, ciphertext):
    """The COSE_Encrypt0 message bytes."""
    return (b"\xd0\x83" + cbor_dumps(PROTECTED) + b"\xa2\x04" + cbor_dumps(kid) + b"\x06"
            + cbor_dumps(piv) + cbor_dumps(ciphertext))


def _refuse(detail):
    raise UnsealError(MALFORMED, detail)


def decode(raw):
    """(protected, kid, piv bytes, sequence number, ciphertext) of a message; UnsealError if malformed."""
    try:
        msg = cbor_loads(raw)
    except DecodeError:
        _refuse("not CBOR")
    if getattr(msg, "tag", None) != 16:
        _refuse("not a tagged COSE_Encrypt0 message")
    body = msg.value
    if isinstance(body, tuple):  # cbor2 makes tag contents immutable: tuple, frozendict
        body = list(body)
    if not isinstance(body, list) or len(body) != 3:
        _refuse("COSE_Encrypt0 is not an array of 3")
    protected, unprotected, ciphertext = body
    if not isinstance(unprotected, dict) and hasattr(unprotected, "items"):
        unprotected = dict(unprotected.items())
    if not isinstance(protected, bytes) or not isinstance(unprotected, dict) or not isinstance(ciphertext, bytes):
        _refuse("COSE_Encrypt0 fields have the wrong types")
    try:
        headers = cbor_loads(protected) if protected else {}
    except DecodeError:
        _refuse("protected header is not CBOR")
    # Exactly {1: 10}; the type checks keep out true/false, which equal 1/0 in Python.
    items = list(headers.items()) if isinstance(headers, dict) else None
    if (items is None or len(items) != 1 or type(items[0][0]) is not int or items[0][0] != 1
            or type(items[0][1]) is not int or items[0][1] != ALG_AES_CCM_16_64_128):
        _refuse("algorithm is not AES-CCM-16-64-128")
    for key in unprotected:
        if type(key) is not int or key not in (4, 6):
            _refuse("unexpected unprotected header")
    kid = unprotected.get(4)
    piv = unprotected.get(6)
    if not isinstance(kid, bytes) or len(kid) > MAX_ID_LEN:
        _refuse("missing or bad kid")
    if not isinstance(piv, bytes) or not 1 <= len(piv) <= 5 or (len(piv) > 1 and piv[0] == 0):
        _refuse("missing or bad partial IV")
    seq = 0
    for b in piv:
        seq = seq << 8 | b
    return protected, kid, piv, seq, ciphertext


def encode_value(value):
    if type(value) not in _VALUE_TYPES:
        raise TypeError("a sealed value is a bool, int, float or str")
    if type(value) is int and not -(1 << 64) <= value < (1 << 64):
        raise TypeError("a sealed int fits in 64 bits (no CBOR bignums: MicroPython's codec has none)")
    return cbor_dumps(value)


def decode_value(plaintext):
    try:
        value = cbor_loads(plaintext)
    except DecodeError:
        _refuse("plaintext is not CBOR")
    if type(value) not in _VALUE_TYPES:
        _refuse("plaintext is not a bool, int, float or str")
    return value


# --- base64url without padding (RFC 4648 section 5) -----------------------------------
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def to_text(raw):
    text = binascii.b2a_base64(raw).decode().strip()
    return text.replace("+", "-").replace("/", "_").rstrip("=")


def from_text(text):
    if not isinstance(text, str):
        raise UnsealError(PLAIN_VALUE, "a sealed value is a string")
    if len(text) > MAX_TEXT:
        _refuse("longer than %d characters" % MAX_TEXT)
    if len(text) % 4 == 1:
        _refuse("not base64url")
    for ch in text:
        if ch not in _ALPHABET:
            _refuse("not base64url")
    b64 = text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4)
    try:
        raw = binascii.a2b_base64(b64)
    except ValueError:
        _refuse("not base64url")
    if to_text(raw) != text:  # unused bits must be zero: one text per message
        _refuse("not canonical base64url")
    return raw
