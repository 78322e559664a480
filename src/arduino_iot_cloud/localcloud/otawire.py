"""The cloud side of the OTA commands, on cbor2 (like :mod:`.wire`, independent of the device's codec).

::

    OtaBeginUp        c/up  tag(0x010000) [bstr(32) sha256 of the running application]
    OtaUpdateCmdDown  c/dw  tag(0x010100) [bstr(16) id, tstr url, bstr(32) initialSha256, bstr(32) finalSha256]
    OtaProgressCmdUp  c/up  tag(0x010200) [bstr(16) id, simple(state), int state_data, uint time]

``time`` is Unix seconds x 1e6.  A Fail report carries a negative error code in
``state_data``; the names below are the C++ library's for the codes it defines.
"""

from __future__ import annotations

from typing import Any, Dict, List

import cbor2

from ..ota.errors import NAMES
from .wire import OTA_BEGIN_UP, OTA_PROGRESS_UP, OTA_UPDATE_DOWN, WireError, encode_command

STATES = {0: "Resume", 1: "OtaBegin", 2: "Idle", 3: "OtaAvailable", 4: "StartOTA", 5: "Fetch", 6: "FlashOTA",
          7: "Reboot", 8: "Fail", 9: "OTAUnavailable"}
FAIL = 8

# The C++ library's OTA error codes (state_data of a Fail report).
ERRORS = {-1: "NoCapableBootloader", -2: "NoOtaStorage", -3: "OtaStorageInit", -4: "OtaStorageOpen",
          -5: "HeaderLength", -6: "HeaderCrc", -7: "MagicNumber", -8: "ParseHttpHeader", -9: "UrlParse",
          -10: "ServerConnect", -11: "HttpHeader", -12: "OtaDownload", -13: "OtaHeaderTimeout",
          -14: "HttpResponse", -15: "StorageEnd", -16: "StorageConfig", -17: "Library", -18: "Modem",
          -19: "OpenUpdateFile", -20: "WriteUpdateFile", -21: "Reformat", -22: "Unmount", -23: "Rename",
          -24: "CaStorageInit", -25: "CaStorageOpen"}
# and this library's own (-200 and below), named where the device defines them
ERRORS.update((code, name) for code, name in NAMES.items() if code <= -200)

ID_SIZE = 16
SHA_SIZE = 32
URL_MAX = 256


def ota_update_down(ota_id: bytes, url: str, initial_sha: bytes, final_sha: bytes) -> bytes:
    """OtaUpdateCmdDown; raises ValueError for fields of the wrong size (the device would refuse them)."""
    if len(ota_id) != ID_SIZE:
        raise ValueError("an OTA id is %d bytes, not %d" % (ID_SIZE, len(ota_id)))
    for name, sha in (("initial", initial_sha), ("final", final_sha)):
        if len(sha) != SHA_SIZE:
            raise ValueError("the %s SHA-256 is %d bytes, not %d" % (name, SHA_SIZE, len(sha)))
    if len(url.encode()) > URL_MAX:
        raise ValueError("the URL is %d bytes; the protocol allows %d" % (len(url.encode()), URL_MAX))
    return encode_command(OTA_UPDATE_DOWN, [bytes(ota_id), url, bytes(initial_sha), bytes(final_sha)])


def _bytes(value: Any, size: int, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        raise WireError("%s is not a %d-byte string: %r" % (what, size, value))
    return value


def decode_ota_begin(fields: List[Any]) -> str:
    """The SHA-256 (hex) an OtaBeginUp reports; WireError if malformed."""
    if len(fields) != 1:
        raise WireError("OtaBeginUp has %d fields, not 1" % len(fields))
    return _bytes(fields[0], SHA_SIZE, "OtaBeginUp sha256").hex()


def decode_ota_progress(fields: List[Any]) -> Dict[str, Any]:
    """``{"id", "state", "state_code", "state_data", "time"}`` (+ ``"error"``, the code's
    name, on a known Fail code) of an OtaProgressCmdUp; WireError if malformed."""
    if len(fields) != 4:
        raise WireError("OtaProgressCmdUp has %d fields, not 4" % len(fields))
    ota_id = _bytes(fields[0], ID_SIZE, "OtaProgressCmdUp id")
    state, data, when = fields[1:]
    if not isinstance(state, cbor2.CBORSimpleValue):
        raise WireError("OtaProgressCmdUp state is not a CBOR simple value: %r" % (state,))
    if state.value not in STATES:
        raise WireError("OtaProgressCmdUp state %d is unknown" % state.value)
    if not isinstance(data, int) or isinstance(data, bool):
        raise WireError("OtaProgressCmdUp state_data is not an integer: %r" % (data,))
    if not isinstance(when, int) or isinstance(when, bool) or when < 0:
        raise WireError("OtaProgressCmdUp time is not an unsigned integer: %r" % (when,))
    out = {"id": ota_id.hex(), "state": STATES[state.value], "state_code": state.value, "state_data": data,
           "time": when}
    if state.value == FAIL and data in ERRORS:
        out["error"] = ERRORS[data]
    return out


def describe_progress(progress: Dict[str, Any]) -> str:
    """One line for people: "Fetch 20480 bytes", "Fail -7 (MagicNumber)", "Reboot"."""
    state, data = progress["state"], progress["state_data"]
    if state == "Fetch":
        return "Fetch %d bytes" % data
    if state == "Fail":
        return "Fail %d%s" % (data, " (%s)" % progress["error"] if "error" in progress else "")
    return state if not data else "%s %d" % (state, data)


UP_TAGS = (OTA_BEGIN_UP, OTA_PROGRESS_UP)
