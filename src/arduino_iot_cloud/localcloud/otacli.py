"""``arduino-localcloud ota DEVICE FILE``: send an update and follow it to the restart.

The file is checked here first (header, CRC, magic; its payload's SHA-256 becomes
finalSha256), then the running cloud serves it and sends OtaUpdateCmdDown.  The
device's progress reports arrive on ``localcloud/ota/<device_id>`` (see
:mod:`.emulator`) and are printed by state name.  The update has worked when,
after Reboot, the device reports (OtaBeginUp) the SHA-256 of the update.

Exit status: 0 when it runs the update; 1 on Fail, OTAUnavailable, another
SHA-256 after the restart (a rollback), or no end within ``--timeout``.
"""

from __future__ import annotations

import hashlib
import queue
import time
from pathlib import Path
from typing import Any, Dict, Optional

from ..ota.pack import PackError, read_ota_file
from .cli import CliError
from .control import ControlClient, ControlError
from .emulator import OTA_TOPIC
from .otawire import describe_progress


def _say(text: str) -> None:
    print("%s %s" % (time.strftime("%H:%M:%S"), text), flush=True)


def _check_sha(text: Optional[str]) -> Optional[str]:
    if text is None:
        return None
    try:
        ok = len(bytes.fromhex(text)) == 32
    except ValueError:
        ok = False
    if not ok:
        raise CliError("--initial-sha wants 64 hex digits, not %r" % text)
    return text.lower()


def run_ota(ctl: ControlClient, device_id: str, file: str, initial_sha: Optional[str], timeout: float) -> int:
    """Send ``file`` to ``device_id`` through the running cloud and print what happens."""
    initial_sha = _check_sha(initial_sha)
    path = Path(file).resolve()
    try:
        payload = read_ota_file(path.read_bytes())
    except OSError as exc:
        raise CliError("cannot read %s: %s" % (path, exc.strerror or exc)) from None
    except PackError as exc:
        raise CliError("%s is not a Python application OTA file: %s" % (path, exc)) from None
    final_sha = hashlib.sha256(payload).hexdigest()

    events: "queue.Queue[Dict[str, Any]]" = queue.Queue()
    ctl.follow(OTA_TOPIC % device_id, events.put)
    try:
        if not ctl.request("state", device_id=device_id).get("connected"):
            print("warning: %s is offline; a command sent now is lost unless it is back and subscribed"
                  % device_id, flush=True)
        sent = ctl.request("ota", device_id=device_id, path=str(path), initial_sha=initial_sha, final_sha=final_sha)
    except ControlError as exc:
        raise CliError(str(exc)) from None
    _say("sent OTA %s to %s: %s (%d bytes, payload SHA-256 %s)" % (
        sent["id"], device_id, path.name, path.stat().st_size, final_sha))

    deadline = time.monotonic() + timeout
    rebooted = False
    last = "nothing yet"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CliError("no end of the update within %.0f s (last report: %s)" % (timeout, last))
        try:
            event = events.get(timeout=left)
        except queue.Empty:
            continue
        kind, detail = event.get("kind"), event.get("detail")
        if kind == "ota_progress" and detail["id"] == sent["id"]:
            last = describe_progress(detail)
            _say(last)
            if detail["state"] == "Fail":
                print("the update failed; the device keeps its application", flush=True)
                return 1
            if detail["state"] == "OTAUnavailable":
                print("the device does not take updates (no OTA enabled)", flush=True)
                return 1
            rebooted = rebooted or detail["state"] == "Reboot"
        elif kind == "ota_begin" and rebooted:
            _say("new SHA-256 %s" % detail)
            if detail == final_sha:
                print("the device runs the update", flush=True)
                return 0
            print("the device runs %s, not the update (%s): it went back to its previous application"
                  % (detail, final_sha), flush=True)
            return 1
        elif kind == "bad_ota":
            _say("malformed OTA message from the device: %s" % detail["error"])
