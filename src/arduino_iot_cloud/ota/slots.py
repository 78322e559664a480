# The application slots under the OTA root, and the pointer file that picks one.
#
# Layout of root (a directory the library owns):
#   a/, b/       two application slots; the one the pointer names is active,
#                the other is where the next update is written
#   state        the pointer file: a few "key=value" lines (below)
#   state.new    the next pointer file while it is written
#
# The pointer file is only ever replaced whole: written as state.new, then
# renamed over state (one rename, atomic on POSIX and on littlefs).  Every
# change of the active application (install, rollback) and of the trial
# bookkeeping is one such rename, so a power cut at any moment leaves the old
# pointer or the new one, and the slot it names was complete before it was
# named.  (FAT file systems cannot rename over a file: use littlefs.)
#
# Keys of the pointer file:
#   active     a|b, the slot to run        sha        its tar payload's SHA-256 (hex)
#   previous   the slot before, or ""      prev_sha   its SHA-256 (hex), or ""
#   trial      1 while the active slot has not attached yet after an update
#   boots      starts counted while on trial;  max_boots  how many are allowed
#   ota_id     id (hex) of the update that installed the active slot
#   failed     a failure to report after a rollback (negative code), or ""
#   failed_id  the id (hex) of the update that failed

import os
from binascii import hexlify

from . import errors
from .errors import OtaError

SLOTS = ("a", "b")
_KEYS = ("active", "sha", "previous", "prev_sha", "trial", "boots", "max_boots", "ota_id", "failed",
         "failed_id")
_INTS = ("trial", "boots", "max_boots")
_counted = []  # roots whose start was counted in this process (app_dir is idempotent)


def hexstr(b):
    return str(hexlify(b), "ascii")


def read_state(root):
    """The pointer file as a dict, or None when no application was installed."""
    try:
        with open(root + "/state") as f:
            text = f.read()
    except OSError:
        return None
    state = {"previous": "", "prev_sha": "", "trial": 0, "boots": 0, "max_boots": 1, "ota_id": "",
             "failed": "", "failed_id": ""}
    for line in text.split("\n"):
        if "=" in line:
            key, value = line.split("=", 1)
            state[key] = int(value) if key in _INTS else value
    if state.get("active") not in SLOTS:
        raise OtaError(errors.RENAME, "%s/state does not name a slot" % root)
    return state


def write_state(root, state):
    """Replace the pointer file in one rename."""
    new = root + "/state.new"
    try:
        with open(new, "w") as f:
            for key in _KEYS:
                f.write("%s=%s\n" % (key, state.get(key, "")))
            _sync(f)
        os.rename(new, root + "/state")
    except OSError as e:
        raise OtaError(errors.RENAME, "cannot replace %s/state: %s" % (root, e))
    _sync_dir(root)


def _sync(f):
    f.flush()
    fsync = getattr(os, "fsync", None)
    if fsync is not None:  # CPython; MicroPython's file systems write through on close
        fsync(f.fileno())


def _sync_dir(root):
    try:
        fd = os.open(root, os.O_RDONLY)
    except (AttributeError, OSError):
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def app_dir(root):
    """The directory of the application to run, or None when none was installed.

    A launcher calls this once at every start.  While the active slot is on
    trial each call counts a start; one more start than allowed means the new
    version died or could not attach: the previous slot becomes active again
    and the failure is reported (ROLLED_BACK) after the next attach.
    """
    state = read_state(root)
    if state is None:
        return None
    if state["trial"] and root not in _counted:
        _counted.append(root)
        state["boots"] += 1
        if state["boots"] > state["max_boots"] and state["previous"]:
            state = rolled_back(state)
        write_state(root, state)
    return root + "/" + state["active"]


def rolled_back(state):
    return {"active": state["previous"], "sha": state["prev_sha"], "previous": "", "prev_sha": "",
            "trial": 0, "boots": 0, "max_boots": state["max_boots"], "ota_id": "",
            "failed": str(errors.ROLLED_BACK), "failed_id": state["ota_id"]}


def active_sha(root):
    """SHA-256 (32 bytes) of the running application; zeros when none was installed."""
    state = read_state(root)
    if state is None or not state["sha"]:
        return bytes(32)
    from binascii import unhexlify

    return unhexlify(state["sha"])


def inactive_slot(root):
    state = read_state(root)
    return "a" if state is None or state["active"] != "a" else "b"


def empty_slot(root, slot):
    """Make root/slot an empty directory (what was there is removed)."""
    path = root + "/" + slot
    try:
        from .tar import makedirs

        makedirs(root)
        remove_tree(path)
        os.mkdir(path)
    except OSError as e:
        raise errors.storage_error(e, path)
    return path


def remove_tree(path):
    try:
        entries = os.listdir(path)
    except OSError:
        try:
            os.remove(path)
        except OSError:
            pass
        return
    for name in entries:
        child = path + "/" + name
        if _is_dir(child):
            remove_tree(child)
        else:
            os.remove(child)
    os.rmdir(path)


def _is_dir(path):
    return os.stat(path)[0] & 0o170000 == 0o040000


def switch(root, slot, sha, ota_id=b"", trial=False, max_boots=1):
    """Make `slot` (complete and verified) the active application, in one rename."""
    old = read_state(root)
    state = {"active": slot, "sha": hexstr(sha), "previous": "", "prev_sha": "", "trial": 1 if trial else 0,
             "boots": 0, "max_boots": max_boots, "ota_id": hexstr(ota_id), "failed": "", "failed_id": ""}
    if old is not None and old["active"] != slot:
        state["previous"] = old["active"]
        state["prev_sha"] = old["sha"]
    write_state(root, state)


def confirm(root):
    """The active slot attached: it is no longer on trial.  Returns True if it was."""
    state = read_state(root)
    if state is None or not state["trial"]:
        return False
    state["trial"] = 0
    state["boots"] = 0
    write_state(root, state)
    return True


def take_failure(root):
    """(code, id bytes) of a rollback not reported yet, or None; clears it."""
    state = read_state(root)
    if state is None or not state["failed"]:
        return None
    from binascii import unhexlify

    failure = (int(state["failed"]), unhexlify(state["failed_id"]))
    state["failed"] = ""
    state["failed_id"] = ""
    write_state(root, state)
    return failure
