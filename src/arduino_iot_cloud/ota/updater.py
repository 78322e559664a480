# The device's side of an over-the-air update: the OTA object a client owns.
#
# Theory of operation
# -------------------
# The session hands OtaUpdateCmdDown to on_update_command() and calls on_attached()
# after every attach; both drivers call step() on every turn.  One update at
# a time, in these states:
#   IDLE         nothing under way
#   ASKING       a request waits for on_request(client, request) to say True
#                (asked again on every step while it says False)
#   FETCHING     the file is downloaded (download.py) straight into the
#                inactive slot (install.py); each step moves it a little
#   REBOOTING    the new slot is active (on trial); the Reboot report is on
#                its way, then restart() runs
# Progress goes to the cloud as OtaProgressCmdUp on c/up: OtaAvailable when a
# request arrives, StartOTA when approved, Fetch (bytes so far) at the start
# and then at most every progress_ms, FlashOTA when verified, Reboot before the
# restart, Fail with a code (errors.py) when anything goes wrong.  Reports
# wait in a short queue while the MQTT link is down; the download goes on.
#
# After the restart the new slot is on trial until its first attach
# (slots.confirm); a launcher's app_dir() counts the starts meanwhile and
# rolls back when they run out (slots.py).  A start that does not attach
# within trial_seconds restarts again, so "cannot attach" also runs them out.

from .. import commands
from ..compat import MICROPYTHON, getLogger
from . import errors, slots
from .errors import OtaError

log = getLogger("arduino_iot_cloud.ota")

IDLE = 0
ASKING = 1
FETCHING = 2
REBOOTING = 3

_REPORTS_MAX = 16          # queued progress reports kept while the link is down
_REBOOT_GRACE_MS = 3000    # at most this long for the Reboot report to be acknowledged


def default_restart():
    """Start the application again: CPython re-executes the same command line;
    MicroPython boards reset; the unix port (no machine.reset) exits with status 0
    for its supervisor to start it again."""
    import sys

    try:
        import os

        execv = os.execv
    except (ImportError, AttributeError):
        execv = None
    if execv is not None and sys.executable:
        execv(sys.executable, [sys.executable] + sys.argv)
    try:
        import machine

        machine.reset()
    except (ImportError, AttributeError):
        pass
    sys.exit(0)


class OTA:
    """Over-the-air updates of the application under `root`.

    on_request(client, request) -> bool approves an update (request has .id,
    .url, .initial_sha256, .final_sha256); False defers it, asked again on
    later steps.  None approves every update.  restart() replaces the default
    restart (default_restart).  trial_boots: starts a new version gets to
    attach; trial_seconds: how long each start may take to attach.
    """

    def __init__(self, root, on_request=None, restart=None, trial_boots=3, trial_seconds=300,
                 chunk_size=None, retries=5, retry_ms=1000, stall_ms=20000, progress_ms=10000):
        self.root = root.rstrip("/") or "/"
        self.on_request = on_request
        self.restart = restart or default_restart
        self.trial_boots = trial_boots
        self.trial_ms = int(trial_seconds * 1000)
        self.chunk_size = chunk_size or (16384 if MICROPYTHON else 262144)
        self.retries = retries
        self.retry_ms = retry_ms
        self.stall_ms = stall_ms
        self.progress_ms = progress_ms
        self.state = IDLE
        self.request = None
        self.client = None
        self.last_error = None      # the OtaError of the last failed update
        self._reports = []
        self._last_time_us = 0
        self._download = None
        self._installer = None
        self._next_progress = 0
        self._reboot_at = None
        self._trial_deadline = None
        self._started = False

    # --- wiring (client and session) ----------------------------------------------
    def bind(self, client):
        self.client = client

    @property
    def busy(self):
        return self.state != IDLE

    def sha256(self):
        """SHA-256 of the running application (32 zero bytes when none was installed,
        or when the pointer file cannot be read)."""
        try:
            return slots.active_sha(self.root)
        except (OtaError, ValueError) as e:
            log.error("OTA: cannot read %s/state: %s", self.root, str(e))
            return bytes(32)

    def on_attached(self, now):
        """The session attached: confirm a version on trial, report what runs."""
        self._trial_deadline = None
        try:
            if slots.confirm(self.root):
                log.info("OTA: the new version attached; it is no longer on trial")
            failure = slots.take_failure(self.root)
        except OtaError as e:
            log.error("%s", str(e))
            failure = None
        self._queue(commands.ota_begin_up(self.sha256()))
        if failure is not None:
            code, ota_id = failure
            log.error("OTA: update %s rolled back: the new version did not attach", slots.hexstr(ota_id))
            if len(ota_id) == 16:
                self._progress(ota_id, commands.OTA_FAIL, code)

    def on_update_command(self, fields, now):
        """OtaUpdateCmdDown (id, url, initial sha, final sha) from the session."""
        request = Request(*fields)
        if self.state != IDLE:
            log.warning("OTA: refusing update %s: update %s is under way", slots.hexstr(request.id),
                        slots.hexstr(self.request.id))
            self._progress(request.id, commands.OTA_FAIL, errors.BUSY)
            return
        log.info("OTA: update %s offered", slots.hexstr(request.id))
        self.request = request
        self.state = ASKING
        self._progress(request.id, commands.OTA_AVAILABLE, 0)

    # --- the step both drivers run ---------------------------------------------------
    def step(self, now):
        """Advance the update under way; return the next deadline (ms) or None."""
        if not self._started:
            self._started = True
            state = _state_or_none(self.root)
            if state is not None and state["trial"]:
                self._trial_deadline = now + self.trial_ms
        deadline = None
        if self.state == ASKING:
            self._ask(now)
            deadline = now + 1000
        if self.state == FETCHING:
            self._fetch(now)
            deadline = now + 2
        if self.state == REBOOTING:
            self._maybe_restart(now)
            deadline = now + 20
        if self._trial_deadline is not None:
            if now >= self._trial_deadline:
                log.error("OTA: the new version did not attach within %d s; restarting", self.trial_ms // 1000)
                self._trial_deadline = None
                self._do_restart()
            elif deadline is None or self._trial_deadline < deadline:
                deadline = self._trial_deadline
        self.flush_reports()
        return deadline

    def _ask(self, now):
        approved = True
        if self.on_request is not None:
            try:
                approved = self.on_request(self.client, self.request)
            except Exception as e:  # a failing callback defers, it does not stop the device
                log.error("OTA: on_request raised %s: %s", type(e).__name__, str(e))
                approved = False
        if approved:
            self._begin(now)

    def _begin(self, now):
        request = self.request
        try:
            from .download import Download, parse_url
            from .install import Installer

            parse_url(request.url)
            zero = bytes(32)
            if request.initial_sha256 != zero and request.initial_sha256 != self.sha256():
                raise OtaError(errors.WRONG_BASE, "the update was built for application %s, this one is %s"
                               % (slots.hexstr(request.initial_sha256), slots.hexstr(self.sha256())))
            self._progress(request.id, commands.OTA_START, 0)
            self._installer = Installer(self.root, request.final_sha256)
            self._download = Download(request.url, self._tls(), self._installer, now, self.chunk_size,
                                      self.retries, self.retry_ms, self.stall_ms)
        except OtaError as e:
            self._fail(e)
            return
        log.info("OTA: downloading %s", request.url.split("?")[0])  # a signed URL's query is a credential
        self.state = FETCHING
        self._next_progress = now

    def _tls(self):
        # The broker's TLS rules (its CA, verification on or off), without the
        # device's own key: the file server only has to prove who it is.
        from ..tls import CERT_NONE, TLSConfig

        tls = getattr(getattr(self.client, "engine", None), "tls", None)
        params = {}
        if tls is not None:
            if tls.cafile is not None:
                params["cafile"] = tls.cafile
            elif tls.cadata is not None:
                params["cadata"] = tls.cadata
            if not tls.verify:
                params["verify_mode"] = CERT_NONE
        return TLSConfig(params)

    def _fetch(self, now):
        try:
            done = self._download.step(now)
            if now >= self._next_progress and not done:
                self._progress(self.request.id, commands.OTA_FETCH, self._download.offset)
                self._next_progress = now + self.progress_ms
            if not done:
                return
            self._download.close()
            sha = self._installer.verify()
            self._progress(self.request.id, commands.OTA_FLASH, 0)
            self._installer.activate(sha, self.request.id, trial=True, max_boots=self.trial_boots)
        except OtaError as e:
            self._fail(e)
            return
        except MemoryError:
            self._fail(OtaError(errors.OTA_DOWNLOAD, "out of memory"))
            return
        log.info("OTA: version %s installed; restarting into it", slots.hexstr(sha))
        self._download = None
        self._installer = None
        self._progress(self.request.id, commands.OTA_REBOOT, 0)
        self.state = REBOOTING
        self._reboot_at = now + _REBOOT_GRACE_MS

    def _fail(self, error):
        log.error("%s", str(error))
        self.last_error = error
        if self._download is not None:
            self._download.close()
        if self._installer is not None:
            self._installer.abandon()
        self._download = None
        self._installer = None
        self._progress(self.request.id, commands.OTA_FAIL, error.code)
        self.state = IDLE
        self.request = None

    def _maybe_restart(self, now):
        # Restart once the Reboot report is acknowledged (or after a grace period).
        # The session's link is the MQTT state of either transport (socket or paho);
        # with no link the report may be lost, so only the grace period ends the wait.
        session = getattr(self.client, "session", None)
        link = None if session is None else session.link
        delivered = not self._reports and link is not None and link.inflight_count() == 0
        if delivered or now >= self._reboot_at:
            self._do_restart()

    def _do_restart(self):
        engine = getattr(self.client, "engine", None)
        if engine is not None:
            engine.close()
        self.restart()
        # A restart= that returns: the new version runs from the next start on;
        # until then this process goes on (the engine reconnects by itself).
        log.warning("OTA: restart() returned; the new version runs after the next start")
        self.state = IDLE
        self.request = None

    # --- reports ---------------------------------------------------------------------
    def _progress(self, ota_id, state, data):
        t = commands.unix_time_us()
        if t <= self._last_time_us:
            t = self._last_time_us + 1
        self._last_time_us = t
        log.info("OTA: %s %d", commands.OTA_STATE_NAMES[state], data)
        self._queue(commands.ota_progress_up(ota_id, state, data, t))

    def _queue(self, payload):
        if len(self._reports) >= _REPORTS_MAX:
            self._reports.pop(1)  # keep the first (what was asked) and the latest
        self._reports.append(payload)

    def flush_reports(self):
        """Publish queued reports while the link takes them; True if any went."""
        session = getattr(self.client, "session", None)
        link = None if session is None else session.link
        sent = False
        while self._reports and link is not None and link.can_publish():
            link.publish(session.command_up, self._reports.pop(0), 1)
            sent = True
        return sent


class Request:
    """An OtaUpdateCmdDown: what on_request sees."""

    def __init__(self, ota_id, url, initial_sha256, final_sha256):
        self.id = ota_id
        self.url = url
        self.initial_sha256 = initial_sha256
        self.final_sha256 = final_sha256

    def __repr__(self):
        return "Request(id=%s, url=%r)" % (slots.hexstr(self.id), self.url)


def _state_or_none(root):
    try:
        return slots.read_state(root)
    except OtaError:
        return None
