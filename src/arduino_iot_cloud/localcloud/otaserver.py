"""The local cloud's OTA file server: HTTPS on 127.0.0.1, certificate from the local CA.

Each served file gets an unguessable URL ``https://127.0.0.1:<port>/ota/<token>.ota``
(a copy of the file is taken at that moment, in the server's directory, so later
changes to the original do not change what the URL serves).  GET and HEAD, HTTP/1.1
with keep-alive, and single byte ranges (RFC 9110 section 14)::

    Range: bytes=a-b | bytes=a- | bytes=-n   -> 206 + Content-Range: bytes a-b/size
    a range that starts at or past the end   -> 416 + Content-Range: bytes */size
    a malformed or multi-part Range          -> ignored: 200 and the whole file

Fault knobs, per file (for the device's failure tests): ``status`` (answer every
request with it, e.g. 404), ``cut_at`` (close the connection when the transfer
reaches this file offset, ``cuts`` times; later requests go through, so a device
that resumes with Range gets the rest), ``length_delta`` (serve a file that many
bytes shorter (< 0) or longer (> 0, zero bytes appended) than the real one, HTTP
itself being consistent), ``rate`` (bytes per second).

After each response the ``on_request(device_id, detail)`` callback hears what
happened (the local cloud records it as an ``ota_http`` event of the device).
"""

from __future__ import annotations

import http.server
import logging
import os
import re
import secrets
import shutil
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

log = logging.getLogger(__name__)

CHUNK = 16 * 1024
IDLE_TIMEOUT = 30.0  # seconds a connection may sit idle (or handshake) before the server drops it
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_PATH = re.compile(r"^/ota/([A-Za-z0-9_-]{32})\.ota$")

RequestCallback = Callable[[Optional[str], Dict[str, Any]], None]


def parse_range(header: Optional[str], size: int) -> Union[None, str, Tuple[int, int]]:
    """The byte range a Range header asks for: ``(first, last)`` inclusive, ``"unsatisfiable"``,
    or None to serve the whole file (no header, a malformed one, or several ranges)."""
    if header is None:
        return None
    m = _RANGE.match(header.strip().replace(" ", ""))
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    a = int(first)
    b = int(last) if last else size - 1
    if last and b < a:
        return None  # invalid: ignored
    if a >= size:
        return "unsatisfiable"
    return a, min(b, size - 1)


class ServedFile:
    """One file behind one URL, with its fault knobs."""

    def __init__(self, token: str, path: Path, device_id: Optional[str]) -> None:
        self.token, self.path, self.device_id = token, path, device_id
        self.status: Optional[int] = None
        self.cut_at: Optional[int] = None
        self.cuts = 0
        self.length_delta = 0
        self.rate: Optional[float] = None

    def set_faults(self, status: Optional[int] = None, cut_at: Optional[int] = None, cuts: int = 1,
                   length_delta: int = 0, rate: Optional[float] = None) -> None:
        """Replace the fault knobs (all defaults: serve normally)."""
        if cut_at is not None and cut_at < 0:
            raise ValueError("cut_at must be >= 0")
        if rate is not None and rate <= 0:
            raise ValueError("rate must be > 0 bytes per second")
        self.status, self.cut_at, self.cuts = status, cut_at, cuts if cut_at is not None else 0
        self.length_delta, self.rate = int(length_delta), rate

    @property
    def size(self) -> int:
        """The length served: the file's, plus ``length_delta``."""
        return max(0, self.path.stat().st_size + self.length_delta)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "localcloud-ota"
    sys_version = ""
    server: "_HttpsServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("ota http %s: " + format, self.client_address[0], *args)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        owner = self.server.owner
        m = _PATH.match(self.path)
        served = owner.files.get(m.group(1)) if m else None
        detail: Dict[str, Any] = {"method": self.command, "range": self.headers.get("Range"), "bytes": 0}
        if served is None:
            self._empty(404, detail)
            owner.report(None, detail)
            return
        if served.status is not None:
            self._empty(served.status, detail)
            owner.report(served.device_id, detail)
            return
        size = served.size
        wanted = parse_range(self.headers.get("Range"), size)
        if wanted == "unsatisfiable":
            self._empty(416, detail, {"Content-Range": "bytes */%d" % size})
            owner.report(served.device_id, detail)
            return
        if wanted is None:
            first, last, status, extra = 0, size - 1, 200, {}
        else:
            first, last = wanted  # type: ignore[misc]
            status, extra = 206, {"Content-Range": "bytes %d-%d/%d" % (first, last, size)}
        detail["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(last - first + 1))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        if body:
            try:
                self._send_body(served, first, last + 1, detail)
            except OSError as exc:  # the client went away
                detail["error"] = str(exc)
                self.close_connection = True
        owner.report(served.device_id, detail)

    def _send_body(self, served: ServedFile, start: int, end: int, detail: Dict[str, Any]) -> None:
        """Send file bytes [start, end) (zero bytes past the real file's end); count them in
        ``detail["bytes"]``; cut the connection where a ``cut_at`` fault says."""
        with self.server.owner.lock:
            cut = served.cut_at if served.cuts and served.cut_at is not None and start <= served.cut_at < end \
                else None
            if cut is not None:
                served.cuts -= 1
        stop = cut if cut is not None else end
        t0 = time.monotonic()
        with open(served.path, "rb") as f:
            f.seek(start)
            pos = start
            while pos < stop:
                n = min(CHUNK, stop - pos)
                if served.rate is not None:
                    n = min(n, max(1, int(served.rate / 20)))  # 20 writes a second at most
                chunk = f.read(n)
                chunk += bytes(n - len(chunk))  # past the end of a file served longer than it is
                self.wfile.write(chunk)
                pos += n
                detail["bytes"] = pos - start
                if served.rate is not None:
                    ahead = (pos - start) / served.rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        if cut is not None:
            self.wfile.flush()
            self.close_connection = True
            # end the TCP stream without a TLS close_notify: the client sees the data sent so far,
            # then EOF mid-body, as when a network drops
            self.connection.shutdown(socket.SHUT_RDWR)

    def _empty(self, status: int, detail: Dict[str, Any], headers: Optional[Dict[str, str]] = None) -> None:
        detail["status"] = status
        self.send_response(status)
        self.send_header("Content-Length", "0")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()


class _HttpsServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: "OtaServer", context: ssl.SSLContext) -> None:
        self.owner, self.context = owner, context
        super().__init__((owner.host, 0), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # the TLS handshake runs here, in the connection's own thread, so a slow or broken
        # client cannot hold up accept()
        request.settimeout(IDLE_TIMEOUT)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.info("ota https: TLS handshake with %s failed: %s", client_address[0], exc)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("ota https: connection from %s ended with an error", client_address[0], exc_info=True)


class OtaServer:
    """HTTPS file server for OTA files.  ``start()`` binds a free port on ``host`` (URLs hold
    random tokens and live as long as the server: a restart forgets them)."""

    def __init__(self, directory: Union[str, Path], certfile: Union[str, Path], keyfile: Union[str, Path],
                 host: str = "127.0.0.1", on_request: Optional[RequestCallback] = None) -> None:
        self.dir = Path(directory)
        self.certfile, self.keyfile = str(certfile), str(keyfile)
        self.host = host
        self.on_request = on_request
        self.files: Dict[str, ServedFile] = {}
        self.lock = threading.Lock()
        self._httpd: Optional[_HttpsServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the OTA file server is not running")
        return self._httpd.server_address[1]

    def start(self) -> "OtaServer":
        """Listen and serve in a background thread."""
        if self._httpd is not None:
            return self
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certfile, self.keyfile)
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob("*.ota"):  # copies served by an earlier run: their URLs are gone
            stale.unlink()
        self._httpd = _HttpsServer(self, context)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="localcloud-ota-https", daemon=True)
        self._thread.start()
        log.info("OTA file server on https://%s:%d/", self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop serving; idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None

    def url(self, served: ServedFile) -> str:
        return "https://%s:%d/ota/%s.ota" % (self.host, self.port, served.token)

    def add(self, path: Union[str, Path], device_id: Optional[str] = None, **faults: Any) -> ServedFile:
        """Serve a copy of ``path`` under a new URL (``url(served)``); ``faults``: see the module doc."""
        token = secrets.token_urlsafe(24)  # 32 characters, 192 random bits
        copy = self.dir / ("%s.ota" % token)
        shutil.copyfile(path, copy)
        os.chmod(copy, 0o600)
        served = ServedFile(token, copy, device_id)
        served.set_faults(**faults)
        with self.lock:
            self.files[token] = served
        return served

    def find(self, url: str) -> ServedFile:
        """The ServedFile behind a URL this server gave out (KeyError if none)."""
        m = re.match(r"^https://[^/]+(/.*)$", url)
        m = _PATH.match(m.group(1)) if m else None
        if m is None or m.group(1) not in self.files:
            raise KeyError("no OTA file is served at %s" % url)
        return self.files[m.group(1)]

    def report(self, device_id: Optional[str], detail: Dict[str, Any]) -> None:
        if self.on_request is not None:
            try:
                self.on_request(device_id, detail)
            except Exception:
                log.exception("OTA request callback failed")
