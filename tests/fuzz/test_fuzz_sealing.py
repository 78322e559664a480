# SealingContext.unseal under arbitrary strings, base64url of random bytes,
# mutated sealed messages and structured COSE-like CBOR, with both CBOR back
# ends (cbor2 and the own codec that MicroPython uses) and both crypto back
# ends (`cryptography` and sealing/aesccm.py): only UnsealError escapes, and
# whatever opens is a value that was really sealed (a mutant that opens may
# differ only in how its CBOR is written, never in what it says).

import random

from hypothesis import given
from hypothesis import strategies as st

import cbor2
import fuzzlib
from arduino_iot_cloud import cbor, compat
from arduino_iot_cloud.errors import UnsealError
from arduino_iot_cloud.sealing import SealingContext, message
from arduino_iot_cloud.sealing.backend import PureBackend, default_backend
from fuzzlib import bounded_call, cbor_values, dumps, mutated, raw_bytes


def _ecb(key):
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update


SECRET = bytes(range(1, 17))
CRYPTO = (default_backend(), PureBackend(_ecb))
CBOR_BACKENDS = (compat.cbor_loads, cbor.loads)

_device = SealingContext(SECRET, b"dev", b"own", volatile=True)
SEALED = [(v, _device.seal("code", v)) for v in (True, 0, -1, 2**40, 21.5, "", "door 1234", "x" * 64)]
VALUES = [v for v, _ in SEALED]
CORPUS = [message.from_text(t) for _, t in SEALED]


def _owner(backend):
    return SealingContext(SECRET, b"own", b"dev", volatile=True, backend=backend)


def check(text, rng):
    for loads in CBOR_BACKENDS:
        saved = compat.cbor_loads
        compat.cbor_loads = loads
        message.cbor_loads = loads
        try:
            backend = rng.choice(CRYPTO)
            value, err = bounded_call(_owner(backend).unseal, UnsealError, "code", text)
        finally:
            compat.cbor_loads = saved
            message.cbor_loads = saved
        if err is None:
            assert type(value) in (bool, int, float, str)
            assert any(value == v and type(value) is type(v) for v in VALUES), value
        else:
            assert err.reason in (message.MALFORMED, message.NOT_AUTHENTIC, message.WRONG_KID,
                                  message.OWN_MESSAGE, message.REPLAY, message.PLAIN_VALUE)


def b64(raw):
    return message.to_text(bytes(raw))


texts = st.one_of(
    st.text(max_size=120),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/", max_size=120),
    raw_bytes().map(b64),
    mutated(CORPUS).map(b64),
    cbor_values().map(lambda v: b64(dumps(cbor2.CBORTag(16, v)))),
    st.tuples(cbor_values(), cbor_values(), cbor_values()).map(lambda t: b64(dumps(cbor2.CBORTag(16, list(t))))),
)


@fuzzlib.fewer(2)
@given(texts, st.randoms(use_true_random=False))
def test_unseal_refuses_only_with_unseal_error(text, rng):
    for case in [text] + [_mutant(rng, text) for _ in range(fuzzlib.PER_EXAMPLE - 1)]:
        check(case, rng)


def _mutant(rng, text):
    try:
        raw = message.from_text(text)
    except UnsealError:
        raw = text.encode("utf-8", "replace")
    return b64(fuzzlib.quick_mutant(rng, raw))


def test_corpus_opens_with_both_cbor_backends():
    rng = random.Random(1)
    for value, text in SEALED:
        check(text, rng)
        assert _owner(CRYPTO[1]).unseal("code", text) == value
