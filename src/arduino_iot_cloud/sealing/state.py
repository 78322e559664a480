# What a sealing context must remember across restarts and power cuts: the
# sender's sequence numbers and the receiver's replay window, in one JSON file
# (state_path), replaced atomically (write a temporary file, then rename).
#
# Rules
# -----
# Rule 1 (no reuse): a sequence number is the nonce's Partial IV; reusing one
#   with the same key breaks AES-CCM (two plaintexts leak their XOR, tags can
#   be forged).  Numbers are reserved RESERVE at a time: the new limit is
#   written to the file *before* the first number of the block is used, and a
#   restart continues from the stored limit.  A power cut therefore skips at
#   most RESERVE - 1 numbers (of 2**40) and never repeats one; the file is
#   written once per RESERVE sealed values instead of once per value (flash
#   wear on boards).
# Rule 2 (replay window): a received number is accepted when it is above the
#   highest seen, or within the WINDOW numbers below it and not seen yet.  The
#   window is a bit mask: bit i is set when number high - 1 - i was seen.
# Rule 3 (same last message): the message last accepted for a property may come
#   again (the cloud's last values after a reconnect, a QoS 1 duplicate): it is
#   reported as a repeat, not a replay.  Same message = same number and same
#   authentication tag: a sender that reused a number (a lost state file, a
#   volatile context) cannot pass another value off as a repeat.
# Rule 4: the window is written to the file when a number is accepted, before
#   the value is handed on, so an old message stays refused after a restart.
#
# The file may also hold other entries (a context file made by
# `python -m arduino_iot_cloud.sealing new` keeps the secret in it): they are
# kept as they are on every rewrite, and the file stays mode 0600.

import json
import os

from ..errors import ConfigError, LocalError

RESERVE = 1024
WINDOW = 32
MAX_SEQ = (1 << 40) - 1  # the Partial IV has at most 5 bytes
_MASK = (1 << WINDOW) - 1

NEW = 0
REPEAT = 1
REPLAY = 2


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def write_file(path, text):
    """Replace path with text atomically, readable by its owner only where the OS allows."""
    tmp = path + ".tmp"
    opener = getattr(os, "open", None)  # CPython: create with mode 0600; MicroPython has no os.open
    if opener is not None:
        fd = opener(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        f = os.fdopen(fd, "w")
    else:
        f = open(tmp, "w")
    try:
        f.write(text)
        f.flush()
        fsync = getattr(os, "fsync", None)
        if fsync is not None:
            fsync(f.fileno())
    finally:
        f.close()
    replace = getattr(os, "replace", None) or os.rename
    replace(tmp, path)


class SealingState:
    """Sequence numbers to send with and the replay window of received ones."""

    def __init__(self, path=None, create=False):
        self.path = path
        self.extra = {}       # other entries of the file, rewritten unchanged
        self.limit = 0        # every number below it may have been used
        self.next_seq = 0
        self.high = -1        # highest number accepted, -1: none yet
        self.bits = 0
        self.last = {}        # property name -> [number, tag (hex)] last accepted for it
        if path is None:
            return
        if create:
            if _exists(path):
                raise ConfigError("state file %s exists already: new_state=True is for the first use only"
                                  % path)
            self.save()
        else:
            self._load()

    def _load(self):
        try:
            with open(self.path) as f:
                data = json.load(f)
        except OSError:
            raise ConfigError("state file %s is missing: a context without its state could reuse "
                              "sequence numbers and accept old messages; make a new secret, or pass "
                              "new_state=True on the very first use only" % self.path)
        except ValueError:
            raise ConfigError("state file %s is not readable JSON" % self.path)
        try:
            self.limit = int(data.pop("seq_limit", 0))
            self.high = int(data.pop("replay_high", -1))
            self.bits = int(data.pop("replay_bits", 0)) & _MASK
            last = data.pop("replay_last", {})
            self.last = {str(k): [int(v[0]), str(v[1])] for k, v in last.items()}
        except (TypeError, ValueError, AttributeError, IndexError, KeyError):
            raise ConfigError("state file %s holds malformed entries" % self.path)
        self.extra = data
        self.next_seq = self.limit

    def save(self):
        if self.path is None:
            return
        data = dict(self.extra)
        data["seq_limit"] = self.limit
        data["replay_high"] = self.high
        data["replay_bits"] = self.bits
        data["replay_last"] = self.last
        write_file(self.path, json.dumps(data))

    # --- sending (Rule 1) ---------------------------------------------------------
    def next_sequence(self):
        seq = self.next_seq
        if seq > MAX_SEQ:
            raise LocalError("sealing sequence numbers are used up: make a new context (new secret)")
        if seq >= self.limit:
            old = self.limit
            self.limit = min(seq + RESERVE, MAX_SEQ + 1)
            try:
                self.save()
            except OSError:
                self.limit = old  # not on disk: not reserved
                raise
        self.next_seq = seq + 1
        return seq

    # --- receiving (Rules 2-4) ------------------------------------------------------
    def check(self, seq, name, tag):
        """NEW, REPEAT (the message last accepted for this property) or REPLAY.
        tag: the message's authentication tag, as hex text."""
        if self.last.get(name) == [seq, tag]:
            return REPEAT
        high = self.high
        if seq > high:
            return NEW
        if seq == high or high - seq > WINDOW:
            return REPLAY
        return REPLAY if self.bits >> (high - seq - 1) & 1 else NEW

    def accept(self, seq, name, tag):
        """Record seq as seen; raises OSError (and records nothing) when the file cannot be written."""
        saved = (self.high, self.bits, self.last.get(name))
        try:
            self._accept(seq, name, tag)
            self.save()
        except OSError:
            self.high, self.bits = saved[0], saved[1]
            if saved[2] is None:
                self.last.pop(name, None)
            else:
                self.last[name] = saved[2]
            raise

    def _accept(self, seq, name, tag):
        high = self.high
        if seq > high:
            shift = seq - high
            if high < 0 or shift > WINDOW:
                self.bits = 0  # the old highest falls out of the window
            else:
                self.bits = ((self.bits << shift) | (1 << (shift - 1))) & _MASK
            self.high = seq
        elif seq < high:
            self.bits |= 1 << (high - seq - 1)
        self.last[name] = [seq, tag]
