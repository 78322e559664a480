# The cryptography under sealed properties: AES-CCM-16-64-128 and HKDF-SHA256.
#
# CPython: the `cryptography` package (pip extra "sealing").  MicroPython:
# sealing/aesccm.py over cryptolib's AES in ECB mode (counter mode is not
# built on most boards) and hashlib.sha256.  Both give the same interface:
#   hkdf(salt, ikm, info, length) -> bytes
#   aead(key) -> an object with seal(nonce, aad, plaintext) -> ciphertext||tag
#                and open(nonce, aad, data) -> plaintext, or None when it
#                does not authenticate.

from ..errors import ConfigError
from . import aesccm

try:  # CPython with the "sealing" extra
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
except ImportError:  # MicroPython, or CPython without the extra
    AESCCM = None


class _PureAead:
    def __init__(self, encrypt_block):
        self._block = encrypt_block

    def seal(self, nonce, aad, plaintext):
        return aesccm.ccm_encrypt(self._block, nonce, aad, plaintext)

    def open(self, nonce, aad, data):
        return aesccm.ccm_decrypt(self._block, nonce, aad, data)


class PureBackend:
    """aesccm.py over a block cipher: block_cipher(key) -> encrypt_block(16 bytes)."""

    name = "aesccm.py"

    def __init__(self, block_cipher):
        self._block_cipher = block_cipher

    def hkdf(self, salt, ikm, info, length):
        return aesccm.hkdf_sha256(salt, ikm, info, length)

    def aead(self, key):
        return _PureAead(self._block_cipher(key))


class _CryptographyAead:
    def __init__(self, key):
        self._ccm = AESCCM(key, tag_length=8)

    def seal(self, nonce, aad, plaintext):
        return self._ccm.encrypt(nonce, plaintext, aad)

    def open(self, nonce, aad, data):
        try:
            return self._ccm.decrypt(nonce, data, aad)
        except InvalidTag:
            return None


class CryptographyBackend:
    name = "cryptography"

    def hkdf(self, salt, ikm, info, length):
        return HKDF(hashes.SHA256(), length, salt or None, info).derive(ikm)

    def aead(self, key):
        return _CryptographyAead(key)


def _cryptolib_block(key):
    import cryptolib

    return cryptolib.aes(key, 1).encrypt  # mode 1: ECB


_default = None


def default_backend():
    """`cryptography` where it is installed, else cryptolib (MicroPython)."""
    global _default
    if _default is None:
        if AESCCM is not None:
            _default = CryptographyBackend()
        else:
            try:
                import cryptolib  # noqa: F401
            except ImportError:
                raise ConfigError("sealed properties need the cryptography package on CPython: "
                                  "pip install 'arduino-iot-cloud[sealing]'")
            _default = PureBackend(_cryptolib_block)
    return _default
