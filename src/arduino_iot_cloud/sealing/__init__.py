# Sealed properties: values the cloud relays but cannot read, change or replay.
#
# A SealingContext is one side (device or owner) of an OSCORE-style security
# context (RFC 8613): from a shared master secret (and salt) each side derives
# its sender key, the other side's key (its recipient key) and a common IV.
# seal() makes a COSE_Encrypt0 message under the sender key with a fresh
# sequence number; unseal() opens one made by the other side under the
# recipient key and refuses replays.  The format is in sealing/message.py, the
# state that survives restarts in sealing/state.py, the crypto in
# sealing/backend.py (cryptography on CPython, aesccm.py on MicroPython), the
# registry record in sealing/property.py, the command in sealing/__main__.py.
#
# Nothing here logs or formats a key, a secret or a plaintext.

import binascii
import json

from ..errors import ConfigError, UnsealError
from . import message
from .state import NEW, REPEAT, SealingState


def _bytes(value, what, max_len=None):
    if isinstance(value, bytearray):
        value = bytes(value)
    if not isinstance(value, bytes):
        raise ConfigError("%s must be bytes" % what)
    if max_len is not None and len(value) > max_len:
        raise ConfigError("%s is at most %d bytes" % (what, max_len))
    return value


class SealingContext:
    """One side of a sealed-property channel.

    master_secret, master_salt: shared with the other side (bytes; the secret
    at least 16 bytes).  sender_id, recipient_id: this side's id and the other
    side's (bytes, at most 7 each, different); the other side swaps them.
    state_path: the file that keeps sequence numbers and the replay window
    across restarts; it must exist, except on the very first use with
    new_state=True.  volatile=True instead keeps everything in memory (tests
    only: sequence numbers restart at 0, so a secret must never be reused with
    a volatile context).
    """

    def __init__(self, master_secret, sender_id, recipient_id, master_salt=b"", state_path=None,
                 volatile=False, new_state=False, backend=None):
        master_secret = _bytes(master_secret, "master_secret")
        if len(master_secret) < 16:
            raise ConfigError("master_secret must be at least 16 bytes")
        master_salt = _bytes(master_salt, "master_salt")
        self.sender_id = _bytes(sender_id, "sender_id", message.MAX_ID_LEN)
        self.recipient_id = _bytes(recipient_id, "recipient_id", message.MAX_ID_LEN)
        if self.sender_id == self.recipient_id:
            raise ConfigError("sender_id and recipient_id must differ")
        if state_path is None and not volatile:
            raise ConfigError("a sealing context needs a state_path (or volatile=True, for tests only): "
                              "without one, sequence numbers would repeat after a restart")
        if state_path is not None and volatile:
            raise ConfigError("give state_path or volatile=True, not both")
        if backend is None:
            from .backend import default_backend

            backend = default_backend()
        self.backend = backend
        sender_key, recipient_key, self._common_iv = message.derive(
            backend, master_secret, master_salt, self.sender_id, self.recipient_id)
        self._sender = backend.aead(sender_key)
        self._recipient = backend.aead(recipient_key)
        self.state = SealingState(state_path, create=new_state)

    def __repr__(self):
        return "<SealingContext sender_id=%s recipient_id=%s>" % (
            binascii.hexlify(self.sender_id).decode(), binascii.hexlify(self.recipient_id).decode())

    @classmethod
    def from_file(cls, path, backend=None):
        """A context from a file made by `python -m arduino_iot_cloud.sealing new`
        (secret, salt, ids and state in one 0600 file, rewritten as the state moves)."""
        try:
            with open(path) as f:
                data = json.load(f)
            fields = [binascii.unhexlify(data[k]) for k in ("master_secret", "sender_id", "recipient_id",
                                                             "master_salt")]
        except OSError:
            raise ConfigError("sealing context file %s is missing (a new secret is needed if it is lost)"
                              % path)
        except (ValueError, KeyError, TypeError):
            raise ConfigError("sealing context file %s is malformed" % path)
        return cls(fields[0], fields[1], fields[2], master_salt=fields[3], state_path=path, backend=backend)

    # --- sending -----------------------------------------------------------------------------
    def seal(self, name, value):
        """The sealed text of value (bool, int, float or str) for property `name`."""
        try:
            plaintext = message.encode_value(value)
        except TypeError as e:
            from ..errors import ValueTypeError

            raise ValueTypeError("property %s: %s" % (name, e))
        seq = self.state.next_sequence()  # written to the state file first when a block is used up
        piv = message.partial_iv(seq)
        nonce = message.nonce(self._common_iv, self.sender_id, piv)
        ciphertext = self._sender.seal(nonce, message.aad(name), plaintext)
        return message.to_text(message.encode(self.sender_id, piv, ciphertext))

    # --- receiving ---------------------------------------------------------------------------
    def open(self, name, text):
        """(value, repeat) of a sealed text from the other side; repeat is True for the
        message last accepted for this property (delivered again).  Raises UnsealError."""
        protected, kid, piv, seq, ciphertext = message.decode(message.from_text(text))
        if kid != self.recipient_id:
            if kid == self.sender_id:
                raise UnsealError(message.OWN_MESSAGE, "sealed by this side, not by the other")
            raise UnsealError(message.WRONG_KID, "the key id is not the other side's")
        nonce = message.nonce(self._common_iv, kid, piv)
        plaintext = self._recipient.open(nonce, message.aad(name, protected), ciphertext)
        if plaintext is None:
            raise UnsealError(message.NOT_AUTHENTIC,
                              "does not authenticate (changed, another key, or sealed for another property)")
        tag = binascii.hexlify(ciphertext[-8:]).decode()
        verdict = self.state.check(seq, name, tag)
        if verdict != NEW and verdict != REPEAT:
            raise UnsealError(message.REPLAY, "sequence number %d was seen already or is too old" % seq)
        value = message.decode_value(plaintext)
        if verdict == NEW:
            try:
                self.state.accept(seq, name, tag)  # on disk before the value is used
            except OSError as e:
                raise UnsealError(message.STATE_NOT_SAVED, "the state file could not be written (%s)" % e)
        return value, verdict == REPEAT

    def unseal(self, name, text):
        """The value of a sealed text from the other side, for property `name`.

        Raises UnsealError (a DecodeError) when it is malformed, does not
        authenticate, was sealed for another property or by an unknown sender,
        or is a replay.  The message last accepted for `name`, delivered again,
        is not a replay."""
        return self.open(name, text)[0]
