# AES-CCM (RFC 3610), HMAC-SHA256 (RFC 2104) and HKDF-SHA256 (RFC 5869) in
# plain Python, for MicroPython, which has AES in ECB mode (cryptolib) and
# SHA-256 (hashlib) but neither CCM, HMAC nor HKDF.  CPython uses the
# `cryptography` package instead (sealing/backend.py); the tests run this
# module on CPython too, against `cryptography`, on one corpus.
#
# Theory of operation (CCM with an 8-byte tag and a 13-byte nonce)
# ----------------------------------------------------------------
# CCM needs only the forward block cipher, given here as `encrypt_block`, a
# function from 16 bytes to 16 bytes (AES-ECB with the key).
#   - Authentication: CBC-MAC over B0 (flags, nonce, message length), then the
#     associated data prefixed by its length and zero-padded to whole blocks,
#     then the plaintext zero-padded.
#   - Encryption: counter mode with blocks A_i = flags' || nonce || i; block
#     A_0 encrypts the tag, A_1.. the message.
# With a 13-byte nonce the length field is 2 bytes (L = 2): a message holds at
# most 65535 bytes.  The tag is compared in constant time.

import hashlib

_TAG_LEN = 8    # AES-CCM-16-64-128: M = 8
_NONCE_LEN = 13  # L = 15 - 13 = 2
_BLOCK = 16

# B0 flags: Adata (0x40) | ((M - 2) / 2) << 3 | (L - 1)
_B0_FLAGS = 0x40 | ((_TAG_LEN - 2) // 2) << 3 | 1
_CTR_FLAGS = 1  # L - 1


def equal(a, b):
    """Constant-time comparison of two byte strings of public length."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def _xor_into(acc, data, offset):
    # acc[i] ^= data[offset + i] for the 16 bytes of a block (data zero-padded)
    n = min(_BLOCK, len(data) - offset)
    for i in range(n):
        acc[i] ^= data[offset + i]


def _cbc_mac(encrypt_block, nonce, aad, plaintext):
    b0 = bytes((_B0_FLAGS,)) + nonce + bytes((len(plaintext) >> 8, len(plaintext) & 0xFF))
    x = bytearray(encrypt_block(b0))
    # Associated data: its length (2 bytes below 0xFF00, else 0xFFFE + 4 bytes), then the data.
    n = len(aad)
    if n < 0xFF00:
        head = bytes((n >> 8, n & 0xFF))
    else:
        head = b"\xff\xfe" + bytes((n >> 24 & 0xFF, n >> 16 & 0xFF, n >> 8 & 0xFF, n & 0xFF))
    a = head + aad
    for off in range(0, len(a), _BLOCK):
        _xor_into(x, a, off)
        x = bytearray(encrypt_block(bytes(x)))
    for off in range(0, len(plaintext), _BLOCK):
        _xor_into(x, plaintext, off)
        x = bytearray(encrypt_block(bytes(x)))
    return x


def _ctr(encrypt_block, nonce, data, start):
    # XOR data with the key stream from counter `start`; returns new bytes.
    out = bytearray(data)
    a = bytearray(bytes((_CTR_FLAGS,)) + nonce + b"\x00\x00")  # (no slice assignment: not on every port)
    counter = start
    for off in range(0, len(out), _BLOCK):
        a[14] = counter >> 8
        a[15] = counter & 0xFF
        s = encrypt_block(bytes(a))
        for i in range(min(_BLOCK, len(out) - off)):
            out[off + i] ^= s[i]
        counter += 1
    return bytes(out)


def _check(nonce, length):
    if len(nonce) != _NONCE_LEN:
        raise ValueError("AES-CCM nonce must be 13 bytes")
    if length > 0xFFFF:
        raise ValueError("AES-CCM message too long for a 13-byte nonce")


def ccm_encrypt(encrypt_block, nonce, aad, plaintext):
    """ciphertext || 8-byte tag of plaintext, authenticating aad as well."""
    _check(nonce, len(plaintext))
    mac = _cbc_mac(encrypt_block, nonce, aad, plaintext)
    tag = _ctr(encrypt_block, nonce, mac[:_TAG_LEN], 0)
    return _ctr(encrypt_block, nonce, plaintext, 1) + tag


def ccm_decrypt(encrypt_block, nonce, aad, data):
    """The plaintext of ciphertext || tag, or None when it does not authenticate."""
    if len(data) < _TAG_LEN:
        return None
    _check(nonce, len(data) - _TAG_LEN)
    n = len(data) - _TAG_LEN
    plaintext = _ctr(encrypt_block, nonce, data[:n], 1)
    mac = _cbc_mac(encrypt_block, nonce, aad, plaintext)
    expected = _ctr(encrypt_block, nonce, mac[:_TAG_LEN], 0)
    if not equal(expected, data[n:]):
        return None
    return plaintext


# --- HMAC-SHA256 and HKDF-SHA256 ------------------------------------------------
_HASH_BLOCK = 64
_IPAD = bytes(0x36 for _ in range(_HASH_BLOCK))
_OPAD = bytes(0x5C for _ in range(_HASH_BLOCK))


def _xor(a, b):
    return bytes(a[i] ^ b[i] for i in range(len(a)))


def hmac_sha256(key, data):
    if len(key) > _HASH_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + bytes(_HASH_BLOCK - len(key))
    inner = hashlib.sha256(_xor(key, _IPAD))
    inner.update(data)
    outer = hashlib.sha256(_xor(key, _OPAD))
    outer.update(inner.digest())
    return outer.digest()


def hkdf_sha256(salt, ikm, info, length):
    """HKDF-SHA256: extract with salt (empty: 32 zero bytes), expand to length bytes."""
    if length > 255 * 32:
        raise ValueError("HKDF output too long")
    prk = hmac_sha256(salt if salt else bytes(32), ikm)
    out = b""
    block = b""
    i = 1
    while len(out) < length:
        block = hmac_sha256(prk, block + info + bytes((i,)))
        out += block
        i += 1
    return out[:length]
