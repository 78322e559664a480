# Sealed properties, sans-I/O: RFC 8613 appendix C vectors (key derivation,
# nonces, AES-CCM), the message format, the replay window, the state file and
# the registry record.  Runs under pytest and under MicroPython
# (tests/mpy_run.py): every crypto test runs on each backend this runtime has
# (CPython: `cryptography`, and sealing/aesccm.py over cryptography's AES-ECB;
# MicroPython: aesccm.py over cryptolib), and the golden messages below, made
# on CPython with `cryptography`, must open and be reproduced byte for byte.

import json
import os

from util import raises, tohex, unhex

from arduino_iot_cloud.errors import ConfigError, UnsealError
from arduino_iot_cloud.records import Registry, ValueTypeError
from arduino_iot_cloud.sealing import SealingContext, aesccm, message
from arduino_iot_cloud.sealing.backend import PureBackend, default_backend
from arduino_iot_cloud.sealing.property import SealedProperty
from arduino_iot_cloud.sealing.state import RESERVE, SealingState


def _cryptography_ecb(key):
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update


def backends():
    found = [default_backend()]
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return found  # MicroPython: the default is already aesccm.py over cryptolib
    found.append(PureBackend(_cryptography_ecb))
    return found


SECRET = unhex("0102030405060708090a0b0c0d0e0f10")
SALT = unhex("9e7ca92223786340")

# RFC 8613 appendix C.1-C.3: (salt, id context, sender id, recipient id,
# sender key, recipient key, common IV, sender nonce PIV 0, recipient nonce PIV 0)
KDF_VECTORS = (
    ("9e7ca92223786340", None, "", "01", "f0910ed7295e6ad4b54fc793154302ff",
     "ffb14e093c94c9cac9471648b4f98710", "4622d4dd6d944168eefb54987c",
     "4622d4dd6d944168eefb54987c", "4722d4dd6d944169eefb54987c"),
    ("9e7ca92223786340", None, "01", "", "ffb14e093c94c9cac9471648b4f98710",
     "f0910ed7295e6ad4b54fc793154302ff", "4622d4dd6d944168eefb54987c",
     "4722d4dd6d944169eefb54987c", "4622d4dd6d944168eefb54987c"),
    ("", None, "00", "01", "321b26943253c7ffb6003b0b64d74041",
     "e57b5635815177cd679ab4bcec9d7dda", "be35ae297d2dace910c52e99f9",
     "bf35ae297d2dace910c52e99f9", "bf35ae297d2dace810c52e99f9"),
    ("", None, "01", "00", "e57b5635815177cd679ab4bcec9d7dda",
     "321b26943253c7ffb6003b0b64d74041", "be35ae297d2dace910c52e99f9",
     "bf35ae297d2dace810c52e99f9", "bf35ae297d2dace910c52e99f9"),
    ("9e7ca92223786340", "37cbf3210017a2d3", "", "01", "af2a1300a5e95788b356336eeecd2b92",
     "e39a0c7c77b43f03b4b39ab9a268699f", "2ca58fb85ff1b81c0b7181b85e",
     "2ca58fb85ff1b81c0b7181b85e", "2da58fb85ff1b81d0b7181b85e"),
    ("9e7ca92223786340", "37cbf3210017a2d3", "01", "", "e39a0c7c77b43f03b4b39ab9a268699f",
     "af2a1300a5e95788b356336eeecd2b92", "2ca58fb85ff1b81c0b7181b85e",
     "2da58fb85ff1b81d0b7181b85e", "2ca58fb85ff1b81c0b7181b85e"),
)

# RFC 8613 appendix C.4-C.8: (key, nonce, AAD, plaintext, ciphertext || tag)
AEAD_VECTORS = (
    ("f0910ed7295e6ad4b54fc793154302ff", "4622d4dd6d944168eefb549868",
     "8368456e63727970743040488501810a40411440", "01b3747631", "612f1092f1776f1c1668b3825e"),
    ("321b26943253c7ffb6003b0b64d74041", "bf35ae297d2dace910c52e99ed",
     "8368456e63727970743040498501810a4100411440", "01b3747631", "4ed339a5a379b0b8bc731fffb0"),
    ("af2a1300a5e95788b356336eeecd2b92", "2ca58fb85ff1b81c0b7181b84a",
     "8368456e63727970743040488501810a40411440", "01b3747631", "72cd7273fd331ac45cffbe55c3"),
    ("ffb14e093c94c9cac9471648b4f98710", "4622d4dd6d944168eefb549868",
     "8368456e63727970743040488501810a40411440", "45ff48656c6c6f20576f726c6421",
     "dbaad1e9a7e7b2a813d3c31524378303cdafae119106"),
    ("ffb14e093c94c9cac9471648b4f98710", "4722d4dd6d944169eefb54987c",
     "8368456e63727970743040488501810a40411440", "45ff48656c6c6f20576f726c6421",
     "4d4c13669384b67354b2b6175ff4b8658c666a6cf88e"),
)

# Sealed by a device context (sender b"dev", recipient b"own", SECRET, SALT) at
# sequence numbers 0-4, then by the owner's at 0-1, on CPython with `cryptography`.
DEVICE_SEALED = (
    ("lock", True, "0INDoQEKogRDZGV2BkEASRbn4Arc7kGV0w"),
    ("n", 42, "0INDoQEKogRDZGV2BkEBSjqskgPViXqJWmM"),
    ("neg", -7, "0INDoQEKogRDZGV2BkECSTdl6NI95mtPdQ"),
    ("temp", 21.5, "0INDoQEKogRDZGV2BkEDUcZXcgNGO-LmTmwY81lfanS-"),
    ("code", "door 1234", "0INDoQEKogRDZGV2BkEEUqqpzJYX4fo9R1xh3oM2pIyocA"),
)
OWNER_SEALED = (
    ("lock", False, "0INDoQEKogRDb3duBkEASfqTXJdhcBhCcQ"),
    ("code", "x" * 32, "0INDoQEKogRDb3duBkEBWCrZqCkFSoz1pwrptx9l_0J_SKNpIL5DpzbEvyOAKCwidK_o2cjqjMpyfoM"),
)


def device(backend=None, **kw):
    if "state_path" not in kw:
        kw["volatile"] = True
    return SealingContext(SECRET, b"dev", b"own", master_salt=SALT, backend=backend, **kw)


def owner(backend=None, **kw):
    if "state_path" not in kw:
        kw["volatile"] = True
    return SealingContext(SECRET, b"own", b"dev", master_salt=SALT, backend=backend, **kw)


def _tmp(name):
    path = "/tmp/sealing-test-%s-%s.json" % (name, tohex(os.urandom(6)))
    return path


def _remove(path):
    for p in (path, path + ".tmp"):
        try:
            os.remove(p)
        except OSError:
            pass


# --- RFC 8613 appendix C ------------------------------------------------------------------
def test_rfc8613_key_derivation_and_nonces():
    for backend in backends():
        for salt, ctx, sid, rid, skey, rkey, iv, snonce, rnonce in KDF_VECTORS:
            got = message.derive(backend, SECRET, unhex(salt), unhex(sid), unhex(rid),
                                 None if ctx is None else unhex(ctx))
            assert (tohex(got[0]), tohex(got[1]), tohex(got[2])) == (skey, rkey, iv), (backend.name, sid, rid)
            assert tohex(message.nonce(got[2], unhex(sid), b"\x00")) == snonce
            assert tohex(message.nonce(got[2], unhex(rid), b"\x00")) == rnonce


def test_rfc8613_info_encoding():
    assert tohex(message.info(b"", "Key", 16)) == "8540f60a634b657910"
    assert tohex(message.info(b"\x01", "Key", 16)) == "854101f60a634b657910"
    assert tohex(message.info(b"", "IV", 13)) == "8540f60a6249560d"


def test_rfc8613_aes_ccm_vectors():
    for backend in backends():
        for key, nonce, aad, plain, sealed in AEAD_VECTORS:
            aead = backend.aead(unhex(key))
            assert tohex(aead.seal(unhex(nonce), unhex(aad), unhex(plain))) == sealed, backend.name
            assert tohex(aead.open(unhex(nonce), unhex(aad), unhex(sealed))) == plain
            tampered = bytearray(unhex(sealed))
            tampered[-1] ^= 1
            assert aead.open(unhex(nonce), unhex(aad), bytes(tampered)) is None
            tampered = bytearray(unhex(sealed))
            tampered[0] ^= 0x80
            assert aead.open(unhex(nonce), unhex(aad), bytes(tampered)) is None
            assert aead.open(unhex(nonce), unhex(aad) + b"x", unhex(sealed)) is None
            assert aead.open(unhex(nonce), unhex(aad), unhex(sealed)[:7]) is None


def test_nonce_with_a_seven_byte_id_and_a_five_byte_partial_iv():
    iv = unhex("4622d4dd6d944168eefb54987c")
    got = message.nonce(iv, b"abcdefg", message.partial_iv(0xFFFFFFFFFF))
    want = bytes(a ^ b for a, b in zip(iv, b"\x07abcdefg\xff\xff\xff\xff\xff"))
    assert got == want


def test_hkdf_and_hmac_rfc_vectors():
    # RFC 5869 test case 1 (HKDF-SHA256) and RFC 4231 test cases 2 and 6 (HMAC-SHA256)
    okm = aesccm.hkdf_sha256(unhex("000102030405060708090a0b0c"), b"\x0b" * 22,
                             unhex("f0f1f2f3f4f5f6f7f8f9"), 42)
    assert tohex(okm) == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                          "34007208d5b887185865")
    mac = aesccm.hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    assert tohex(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    # RFC 4231 test case 6: a key longer than the block is hashed first
    mac = aesccm.hmac_sha256(b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First")
    assert tohex(mac) == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"


def test_constant_time_equal():
    assert aesccm.equal(b"abc", b"abc")
    assert not aesccm.equal(b"abc", b"abd")
    assert not aesccm.equal(b"abc", b"ab")


# --- the message format ---------------------------------------------------------------------
def test_golden_messages_open_and_are_reproduced_on_every_backend():
    for backend in backends():
        dev, own = device(backend), owner(backend)
        for name, value, text in DEVICE_SEALED:
            assert dev.seal(name, value) == text, (backend.name, name)
            got = own.unseal(name, text)
            assert got == value and type(got) is type(value)
        for name, value, text in OWNER_SEALED:
            assert own.seal(name, value) == text, (backend.name, name)
            assert dev.unseal(name, text) == value


def test_message_layout():
    raw = message.from_text(DEVICE_SEALED[1][2])  # "n" = 42 at sequence number 1
    # tag 16, array of 3, bstr(A1 01 0A), {4: h'646576', 6: h'01'}, ciphertext (1 + 1 bytes + 8 tag)
    assert tohex(raw[:15]) == "d08343a1010aa20443646576064101"
    assert raw[15] == 0x4A and len(raw) == 16 + 10  # bstr of 2 plaintext bytes (18 2a) + 8 tag bytes
    assert message.aad("n") == unhex("8368456e63727970743043a1010a4c82687365616c65642f31616e")
    assert message.partial_iv(0) == b"\x00"
    assert message.partial_iv(255) == b"\xff"
    assert message.partial_iv(256) == b"\x01\x00"
    assert "=" not in DEVICE_SEALED[3][2]


def test_contexts_of_different_backends_talk():
    found = backends()
    for a in found:
        for b in found:
            dev, own = device(a), owner(b)
            for i in range(3):
                text = dev.seal("v", "value %d" % i)
                assert own.unseal("v", text) == "value %d" % i
                text = own.seal("w", i * 1.5)
                assert dev.unseal("w", text) == i * 1.5


def _reason(fn, *args):
    return raises(UnsealError, fn, *args).reason


def test_refusals():
    dev, own = device(), owner()
    text = dev.seal("door", "1234")
    assert _reason(own.unseal, "other", text) == message.NOT_AUTHENTIC  # moved to another property
    assert _reason(dev.unseal, "door", text) == message.OWN_MESSAGE
    stranger = SealingContext(SECRET, b"x", b"own", master_salt=SALT, volatile=True)
    assert _reason(own.unseal, "door", stranger.seal("door", "1")) == message.WRONG_KID
    other_secret = SealingContext(b"\x02" * 16, b"dev", b"own", volatile=True)
    assert _reason(own.unseal, "door", other_secret.seal("door", "1")) == message.NOT_AUTHENTIC
    assert _reason(own.unseal, "door", 1234) == message.PLAIN_VALUE
    raw = bytearray(message.from_text(text))
    raw[-3] ^= 4
    assert _reason(own.unseal, "door", message.to_text(bytes(raw))) == message.NOT_AUTHENTIC
    for bad in ("", "1234", "a", "====", "0INDoQEKogRDZGV2BkEASRbn4Arc7kGV0w=", "0IND+QEK",
                "0INDoQEKogRDZGV2BkEASRbn4Arc7kGV0x", "x" * 9000, "\u00e9t\u00e9", "0INDoQEK\n"):
        assert _reason(own.unseal, "door", bad) == message.MALFORMED, bad
    # The same structure with an unknown header, a wrong algorithm, a long partial IV, a leading zero:
    ct = b"\x00" * 9
    for body in (b"\xd0\x83\x43\xa1\x01\x0a\xa3\x04\x43dev\x06\x41\x00\x05\x40\x49" + ct,
                 b"\xd0\x83\x43\xa1\x01\x0b\xa2\x04\x43dev\x06\x41\x00\x49" + ct,
                 b"\xd0\x83\x43\xa1\x01\x0a\xa2\x04\x43dev\x06\x46\x01\x02\x03\x04\x05\x06\x49" + ct,
                 b"\xd0\x83\x43\xa1\x01\x0a\xa2\x04\x43dev\x06\x42\x00\x01\x49" + ct,
                 b"\xd1\x83\x43\xa1\x01\x0a\xa2\x04\x43dev\x06\x41\x00\x49" + ct,
                 b"\xd0\x83\x43\xa1\x01\x0a\xa1\x04\x43dev\x49" + ct,
                 b"\xd0\x82\x43\xa1\x01\x0a\xa2\x04\x43dev\x06\x41\x00"):
        assert _reason(own.unseal, "door", message.to_text(body)) == message.MALFORMED, tohex(body)
    # Refusals leave the replay window as it was: the good message still opens.
    assert own.unseal("door", text) == "1234"


def test_replay_window():
    dev, own = device(), owner()
    sealed = [dev.seal("p", i) for i in range(40)]
    assert own.unseal("p", sealed[35]) == 35
    assert own.unseal("p", sealed[35]) == 35            # the same last message: not an error
    assert own.unseal("p", sealed[3]) == 3              # 32 below the highest: in the window
    assert own.unseal("p", sealed[3]) == 3              # the last accepted for "p" again
    assert own.unseal("p", sealed[10]) == 10
    assert _reason(own.unseal, "p", sealed[3]) == message.REPLAY   # seen, no longer the last
    assert _reason(own.unseal, "p", sealed[2]) == message.REPLAY   # 33 below: too old
    assert _reason(own.unseal, "p", sealed[35]) == message.REPLAY  # seen, no longer the last
    assert own.unseal("p", sealed[20]) == 20
    assert own.unseal("p", sealed[39]) == 39
    for i in (20, 35, 39 - 33):
        assert _reason(own.unseal, "p", sealed[i]) == message.REPLAY
    assert own.unseal("p", sealed[38]) == 38
    # The last message of another property is not this property's repeat.
    q = dev.seal("q", 1)
    assert own.unseal("q", q) == 1
    assert own.unseal("q", q) == 1
    assert _reason(own.unseal, "p", sealed[39]) == message.REPLAY


def test_window_slides_far():
    st = SealingState()
    st.accept(5, "a", "00")
    st.accept(5 + 100, "a", "01")
    assert st.check(5 + 100 - 32, "a", "02") == 0
    assert st.check(5 + 100 - 33, "a", "02") == 2
    assert st.check(5, "b", "00") == 2
    assert st.check(105, "a", "01") == 1
    assert st.check(105, "a", "02") == 2   # the same number with another tag: not the same message


# --- the state file -------------------------------------------------------------------------------
def test_state_file_reserves_before_use_and_survives_a_restart():
    path = _tmp("state")
    try:
        raises(ConfigError, device, state_path=path)                   # no file, no new_state
        dev = device(state_path=path, new_state=True)
        raises(ConfigError, device, state_path=path, new_state=True)   # never reset an existing one
        own = owner()
        first = dev.seal("v", 1)
        with open(path) as f:
            assert json.load(f)["seq_limit"] == RESERVE                 # written before number 0 was used
        for i in range(RESERVE):
            dev.seal("v", 2)
        with open(path) as f:
            assert json.load(f)["seq_limit"] == 2 * RESERVE
        # Restart: numbers continue above the stored limit, never below.
        dev2 = device(state_path=path)
        text = dev2.seal("v", 3)
        _protected, _kid, _piv, seq, _ct = message.decode(message.from_text(text))
        assert seq == 2 * RESERVE
        assert own.unseal("v", text) == 3
        assert _reason(own.unseal, "v", first) == message.REPLAY
    finally:
        _remove(path)


def test_replay_state_survives_a_restart():
    path = _tmp("replay")
    try:
        dev = device()
        own = owner(state_path=path, new_state=True)
        old, last = dev.seal("v", "old"), dev.seal("v", "last")
        assert own.unseal("v", old) == "old"
        assert own.unseal("v", last) == "last"
        own2 = owner(state_path=path)
        assert _reason(own2.unseal, "v", old) == message.REPLAY
        assert own2.unseal("v", last) == "last"       # the last one again: not an error
        with open(path) as f:
            data = json.load(f)
        assert data["replay_high"] == 1 and list(data["replay_last"]) == ["v"]
        assert data["replay_last"]["v"][0] == 1
    finally:
        _remove(path)


def test_context_file_keeps_its_secret_entries():
    path = _tmp("ctx")
    try:
        with open(path, "w") as f:
            json.dump({"master_secret": tohex(SECRET), "master_salt": tohex(SALT), "sender_id": tohex(b"own"),
                       "recipient_id": tohex(b"dev"), "seq_limit": 0}, f)
        own = SealingContext.from_file(path)
        assert device().unseal("x", own.seal("x", 5)) == 5
        with open(path) as f:
            data = json.load(f)
        assert data["master_secret"] == tohex(SECRET) and data["seq_limit"] == RESERVE
        assert repr(own).find(tohex(SECRET)) < 0
        raises(ConfigError, SealingContext.from_file, path + ".missing")
    finally:
        _remove(path)


def test_bad_arguments():
    raises(ConfigError, SealingContext, SECRET, b"dev", b"own")                      # no state, not volatile
    raises(ConfigError, SealingContext, SECRET, b"dev", b"own", state_path="x", volatile=True)
    raises(ConfigError, SealingContext, b"short", b"dev", b"own", volatile=True)
    raises(ConfigError, SealingContext, SECRET, b"12345678", b"own", volatile=True)  # 8-byte id
    raises(ConfigError, SealingContext, SECRET, b"same", b"same", volatile=True)
    raises(ConfigError, SealingContext, "text", b"dev", b"own", volatile=True)
    raises(ValueTypeError, device().seal, "x", [1, 2])
    raises(ValueTypeError, device().seal, "x", None)
    raises(ValueTypeError, device().seal, "x", 1 << 64)
    assert owner().unseal("x", device().seal("x", -(1 << 64))) == -(1 << 64)


# --- the registry record -------------------------------------------------------------------------
class _Client:
    def __init__(self):
        self.writes = []


def _registry(ctx, **kw):
    reg = Registry()
    client = _Client()
    kw.setdefault("on_write", lambda c, v: c.writes.append(v))
    reg.add(SealedProperty(ctx, "code", **kw))
    reg.add(SealedProperty(ctx, "other", on_write=lambda c, v: c.writes.append(("other", v))))
    return reg, client


def test_sealed_property_publishes_sealed_text():
    dev, own = device(), owner()
    reg, _client = _registry(dev, value="1234")
    (name, text), = reg.changes()
    assert name == "code" and text != "1234" and own.unseal("code", text) == "1234"
    reg.get("code").set("1234")
    assert reg.changes() == ()                                 # unchanged: nothing sealed, nothing sent
    reg.get("code").set("5678")
    (name, text), = reg.changes()
    assert own.unseal("code", text) == "5678"
    raises(ValueTypeError, reg.get("code").set, 5)             # the kind stays str
    assert "1234" not in repr(reg.get("code")) and "5678" not in repr(reg.get("code"))


def test_sealed_property_applies_writes_and_drops_the_rest():
    dev, own = device(), owner()
    reg, client = _registry(dev)
    good = own.seal("code", "1111")
    reg.apply([("code", None, good, None)], client)
    assert client.writes == ["1111"] and reg.get("code").value == "1111"
    # Delivered again on e/i: no second on_write.
    reg.apply([("code", None, good, None)], client)
    assert client.writes == ["1111"]
    # Drops: another property's message, a plain value, garbage, a replay (seen, no longer
    # the last), the device's own.
    reg.apply([("code", None, own.seal("code", "3333"), None)], client)
    assert client.writes == ["1111", "3333"]
    for bad in (own.seal("other", "x"), 1234, "1234", good, dev.seal("code", "9")):
        reg.apply([("code", None, bad, None), ("other", None, own.seal("other", "ok"), None)], client)
        assert client.writes[-1] == ("other", "ok") and reg.get("code").value == "3333"
    assert client.writes.count("1111") == 1 and "9" not in client.writes
    # A good write after the drops arrives.
    reg.apply([("code", None, own.seal("code", "4444"), None)], client)
    assert client.writes[-1] == "4444"


def test_sealed_property_last_values():
    dev, own = device(), owner()
    reg, client = _registry(dev)
    text = own.seal("code", "1111")
    reg.apply([("code", None, text, None)], client, last_values=True)
    assert client.writes == ["1111"]
    reg.apply([("code", None, text, None)], client, last_values=True)     # after a reconnect: same one
    assert client.writes == ["1111"]
    reg.get("code").set("2222")
    (_, mine), = reg.changes()
    reg.apply([("code", None, mine, None)], client, last_values=True)     # the device's own: kept
    assert reg.get("code").value == "2222" and client.writes == ["1111"]


def test_a_reused_number_is_not_a_repeat():
    # A sender that lost its state seals another value under a number already used:
    # the receiver must not take it for the last message delivered again.
    own = owner()
    assert own.unseal("x", device().seal("x", 1)) == 1
    assert _reason(own.unseal, "x", device().seal("x", 2)) == message.REPLAY
    assert own.unseal("x", device().seal("x", 1)) == 1   # the very same message again: fine


def test_a_state_file_that_cannot_be_written_loses_nothing():
    # The directory of the state file disappears: sealing raises OSError and reserves
    # nothing; unsealing refuses the value (its replay state could not be kept), and
    # the same message is refused again rather than taken for a repeat.
    d = "/tmp/sealing-test-dir-%s" % tohex(os.urandom(6))
    os.mkdir(d)
    path = d + "/state.json"
    try:
        dev = device(state_path=path, new_state=True)
        own = owner(state_path=d + "/owner.json", new_state=True)
        text = dev.seal("v", 1)                        # reserves 0..RESERVE-1 on disk
        for p in (path, d + "/owner.json"):
            os.remove(p)
        os.rmdir(d)
        assert _reason(own.unseal, "v", text) == message.STATE_NOT_SAVED
        assert _reason(own.unseal, "v", text) == message.STATE_NOT_SAVED
        dev.state.next_seq = RESERVE                    # the next seal needs a new block
        raises(OSError, dev.seal, "v", 2)
        raises(OSError, dev.seal, "v", 2)               # still not reserved: refused again
        os.mkdir(d)
        text = dev.seal("v", 3)
        with open(path) as f:
            assert json.load(f)["seq_limit"] == 2 * RESERVE
        assert message.decode(message.from_text(text))[3] == RESERVE
    finally:
        for p in (path, path + ".tmp", d + "/owner.json", d + "/owner.json.tmp"):
            _remove(p)
        try:
            os.rmdir(d)
        except OSError:
            pass
