"""Interop: sealed values made by other implementations open in SealingContext,
and SealingContext's open there.  The other side is written here from the
standards, without the library's format code: keys by `cryptography`'s HKDF
with the RFC 8613 info array built by cbor2, messages by pycose (which makes
the nonce from the Partial IV header itself, given the OSCORE base IV as the
key's base_iv), or by cbor2 + `cryptography`'s AESCCM directly."""

import base64

import pytest

cbor2 = pytest.importorskip("cbor2")
pytest.importorskip("cryptography")
pycose = pytest.importorskip("pycose")

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESCCM  # noqa: E402
from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # noqa: E402
from pycose.algorithms import AESCCM1664128  # noqa: E402
from pycose.headers import KID, Algorithm, PartialIV  # noqa: E402
from pycose.keys import SymmetricKey  # noqa: E402
from pycose.messages import Enc0Message  # noqa: E402

from arduino_iot_cloud.errors import UnsealError  # noqa: E402
from arduino_iot_cloud.sealing import SealingContext  # noqa: E402
from arduino_iot_cloud.sealing.backend import PureBackend  # noqa: E402

SECRET = bytes.fromhex("00112233445566778899aabbccddeeff0123")
SALT = b"salt-01"
DEVICE, OWNER = b"dev-7", b"owner"


def hkdf(info, length):
    return HKDF(hashes.SHA256(), length, SALT, info).derive(SECRET)


def key_for(sender_id):
    return hkdf(cbor2.dumps([sender_id, None, 10, "Key", 16]), 16)


COMMON_IV = hkdf(cbor2.dumps([b"", None, 10, "IV", 13]), 13)


def base_iv(sender_id):
    # RFC 8613 5.2 with the Partial IV left out: pycose XORs the Partial IV in.
    block = bytes([len(sender_id)]) + sender_id.rjust(7, b"\0") + bytes(5)
    return bytes(a ^ b for a, b in zip(COMMON_IV, block))


def nonce(sender_id, piv):
    block = bytes([len(sender_id)]) + sender_id.rjust(7, b"\0") + piv.rjust(5, b"\0")
    return bytes(a ^ b for a, b in zip(COMMON_IV, block))


def external_aad(name):
    return cbor2.dumps(["sealed/1", name])


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _ecb(key):
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update


@pytest.fixture(params=["cryptography", "aesccm.py"])
def device(request):
    backend = None if request.param == "cryptography" else PureBackend(_ecb)
    return SealingContext(SECRET, DEVICE, OWNER, master_salt=SALT, volatile=True, backend=backend)


def pycose_seal(name, value, seq):
    piv = seq.to_bytes(max(1, (seq.bit_length() + 7) // 8), "big")
    msg = Enc0Message(phdr={Algorithm: AESCCM1664128}, uhdr={KID: OWNER, PartialIV: piv},
                      payload=cbor2.dumps(value), external_aad=external_aad(name))
    msg.key = SymmetricKey(k=key_for(OWNER), optional_params={"BASE_IV": base_iv(OWNER)})
    return b64(msg.encode())


def pycose_open(name, text):
    # Enc0Message.decode() takes a list, and cbor2 6 decodes tag contents as a
    # tuple (an incompatibility of those two): decode the tag here, hand pycose the list.
    tag = cbor2.loads(unb64(text))
    assert tag.tag == 16
    protected, unprotected, ciphertext = tag.value
    msg = Enc0Message.from_cose_obj([protected, dict(unprotected), ciphertext], True)
    assert msg.get_attr(KID) == DEVICE
    msg.key = SymmetricKey(k=key_for(DEVICE), optional_params={"BASE_IV": base_iv(DEVICE)})
    msg.external_aad = external_aad(name)
    return cbor2.loads(msg.decrypt())


VALUES = [True, False, 0, 23, 24, -1, 2**32, 21.5, -0.25, "", "door 1234", "é" * 40]


def test_pycose_messages_open_on_the_device(device):
    for i, value in enumerate(VALUES):
        text = pycose_seal("code", value, 3 + 97 * i)  # one- and two-byte partial IVs
        got = device.unseal("code", text)
        assert got == value and type(got) is type(value)
    with pytest.raises(UnsealError):
        device.unseal("other", pycose_seal("code", "x", 5000))  # sealed for another property


def test_device_messages_open_in_pycose(device):
    for value in VALUES:
        text = device.seal("code", value)
        got = pycose_open("code", text)
        assert got == value and type(got) is type(value)


def test_cryptography_directly_both_ways(device):
    # Owner -> device, the message built by hand with cbor2 and AESCCM.
    piv = b"\x01\x02"
    protected = cbor2.dumps({1: 10})
    aad = cbor2.dumps(["Encrypt0", protected, external_aad("temp")])
    ct = AESCCM(key_for(OWNER), tag_length=8).encrypt(nonce(OWNER, piv), cbor2.dumps(-40.5), aad)
    text = b64(cbor2.dumps(cbor2.CBORTag(16, [protected, {4: OWNER, 6: piv}, ct])))
    assert device.unseal("temp", text) == -40.5
    # Device -> owner, opened by hand.
    tag = cbor2.loads(unb64(device.seal("temp", 99.5)))
    assert tag.tag == 16
    protected, unprotected, ct = tag.value
    assert protected == b"\xa1\x01\x0a" and unprotected[4] == DEVICE
    aad = cbor2.dumps(["Encrypt0", protected, external_aad("temp")])
    plain = AESCCM(key_for(DEVICE), tag_length=8).decrypt(nonce(DEVICE, unprotected[6]), ct, aad)
    assert cbor2.loads(plain) == 99.5
