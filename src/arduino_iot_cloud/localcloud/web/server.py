"""The dashboard's web server: aiohttp on 127.0.0.1, in a thread beside the local cloud.

Why aiohttp: one well-kept package gives the HTTP server, WebSockets and static
files on asyncio, with no separate ASGI server to run.

Access
------
A token (random, kept in the work directory's 0600 ``admin.json`` under
``dashboard_token``) guards everything that carries data: every write is a POST
with ``Authorization: Bearer <token>``, and the live stream is a WebSocket whose
first message must be ``{"token": ...}``.  Only the page's static files are
served without it.  The token travels in no URL the server sees (the address
printed at start carries it in the ``#`` fragment, which browsers keep to
themselves), so it never lands in a log.

Live values
-----------
The emulator hands every event to :meth:`Dashboard._listener` (in its own
threads); the server's loop records last-seen times, refused logins and chart
points, and pushes each changed device to the open pages at most every
PUSH_INTERVAL.  A page gets one snapshot when it connects (devices, their
values and each numeric property's recent history), then only changes.

OTA
---
``POST /api/devices/<id>/ota`` takes an OTA file as the raw request body (at
most OTA_FILE_MAX bytes), checks it as the device will (header length, CRC-32,
magic, LZSS: ``ota.pack.read_ota_file``) and sends it with ``send_ota``.  The
device's progress reports reach the pages at once as ``{"type": "ota"}``
messages; the SHA-256 it reports after the restart arrives in its row.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import logging
import re
import secrets
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Deque, Dict, List, Optional, Set, Tuple

from aiohttp import WSMsgType, web

from ..broker import HOST, _write_private, port_is_free
from ...ota.pack import PackError, read_ota_file
from ..emulator import BROKER, CloudEmulator
from ..otawire import describe_progress
from . import view

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
TOKEN_KEY = "dashboard_token"
PORT_KEY = "dashboard_port"
PUSH_INTERVAL = 0.05   # seconds: device updates are coalesced to at most one push per interval
REFUSED_MAX = 50       # refused logins kept for the page
QUEUE_MAX = 2000       # messages waiting for one page; a page that falls further behind is dropped
AUTH_TIMEOUT = 10.0    # seconds a new live connection has to send its token
OTA_FILE_MAX = 16 * 1024 * 1024  # the largest OTA file the page may upload
_THING_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def dashboard_token(cloud: Any) -> str:
    """The dashboard's token from the cloud's ``admin.json`` (made and saved there, mode 0600,
    on first use)."""
    admin = cloud.admin_credentials()
    if not admin.get(TOKEN_KEY):
        _save_admin(cloud, TOKEN_KEY, secrets.token_urlsafe(24))
    return admin[TOKEN_KEY]


def _save_admin(cloud: Any, key: str, value: Any) -> None:
    """Set one key of the cloud's ``admin.json`` (rewritten whole, mode 0600)."""
    admin = cloud.admin_credentials()
    admin[key] = value
    _write_private(Path(cloud.workdir) / "admin.json", json.dumps(admin))


class _Refused(Exception):
    """A request the dashboard refuses: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Dashboard:
    """The web dashboard of a running :class:`~arduino_iot_cloud.localcloud.LocalCloud`.

    ``start()`` serves it on ``127.0.0.1:port`` (0: a free port; None: the port of the
    last start, kept in ``admin.json``, if it is still free, else a free one; see :attr:`port`)
    and returns once it listens; ``stop()`` closes it.  :attr:`url` is the page,
    :attr:`login_url` the page with the token in its fragment.
    """

    def __init__(self, cloud: Any, port: Optional[int] = None, token: Optional[str] = None) -> None:
        self.cloud = cloud
        self.host = HOST
        self.token = token or dashboard_token(cloud)
        if port is None:
            last = cloud.admin_credentials().get(PORT_KEY)
            port = last if isinstance(last, int) and port_is_free(last) else 0
        self.port = port
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._runner: Optional[web.AppRunner] = None
        self._emulator: Optional[CloudEmulator] = None
        self._pages: Dict[web.WebSocketResponse, "asyncio.Queue[Optional[str]]"] = {}
        self._last_seen: Dict[str, float] = {}
        self._refused: Deque[Dict[str, Any]] = collections.deque(maxlen=REFUSED_MAX)
        self._dirty: Set[str] = set()
        self._points: Dict[Tuple[str, str], List[List[float]]] = {}
        self._push_scheduled = False

    @property
    def url(self) -> str:
        """The page's address (without the token)."""
        return "http://%s:%d/" % (self.host, self.port)

    @property
    def login_url(self) -> str:
        """The page's address with the token in the fragment (print it once, never log it)."""
        return "%s#token=%s" % (self.url, self.token)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> "Dashboard":
        """Listen on 127.0.0.1; return once the page can be loaded."""
        emulator = self.cloud.emulator
        if emulator is None:
            raise RuntimeError("the local cloud is not running: start it before its dashboard")
        self._emulator = emulator
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="localcloud-dashboard", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024, middlewares=[self._headers])
        app.router.add_get("/", self._index)
        app.router.add_static("/static/", STATIC)
        app.router.add_get("/api/live", self._live)
        app.router.add_post("/api/devices/{device_id}/properties/{name}", self._authorized(self._write))
        app.router.add_post("/api/devices/{device_id}/detach", self._authorized(self._detach))
        app.router.add_post("/api/devices/{device_id}/reassign", self._authorized(self._reassign))
        app.router.add_post("/api/devices/{device_id}/timezone", self._authorized(self._timezone))
        app.router.add_post("/api/devices/{device_id}/ota", self._authorized(self._ota, json_body=False))
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        if self.cloud.admin_credentials().get(PORT_KEY) != self.port:
            _save_admin(self.cloud, PORT_KEY, self.port)  # the same address next time, if free
        assert self._emulator is not None
        with self._emulator._cond:  # no event may slip between the first look and the listener
            for device_id in list(self._emulator.devices):
                seen = [t for t, kind, _ in self._emulator.events(device_id, timestamps=True)
                        if kind in view.DEVICE_KINDS]
                if seen:
                    self._last_seen[device_id] = seen[-1]
            for t, kind, detail in self._emulator.events(BROKER, timestamps=True):
                if kind == "refused":
                    self._refused.append(self._refusal(t, detail))
            self._emulator.listeners.append(self._listener)
        log.info("dashboard listening on %s", self.url)

    def stop(self) -> None:
        """Close the pages and the server; idempotent."""
        if self._emulator is not None and self._listener in self._emulator.listeners:
            self._emulator.listeners.remove(self._listener)
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._runner is not None and loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._close(), loop).result(5)
            except Exception:
                log.exception("the dashboard did not close cleanly")
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        loop.close()

    async def _close(self) -> None:
        for ws, queue in list(self._pages.items()):
            queue.put_nowait(None)
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def __enter__(self) -> "Dashboard":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- events from the emulator ------------------------------------------------------------

    def _listener(self, device_id: str, when: float, kind: str, detail: Any) -> None:
        """Called in the emulator's threads under its lock: only hand the event to our loop."""
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._on_event, device_id, when, kind, view.jsonable(detail))
            except RuntimeError:  # the loop closed while the dashboard stops
                pass

    def _on_event(self, device_id: str, when: float, kind: str, detail: Any) -> None:
        if device_id == BROKER:
            if kind == "refused":
                refusal = self._refusal(when, detail)
                self._refused.append(refusal)
                self._broadcast({"type": "refused", "refusal": refusal})
            return
        if kind in view.DEVICE_KINDS:
            self._last_seen[device_id] = when
        if kind == "ota_progress" and isinstance(detail, dict):
            self._broadcast({"type": "ota", "device_id": device_id, "id": detail.get("id"),
                             "state": detail.get("state"), "text": describe_progress(detail)})
        elif kind == "ota_sent" and isinstance(detail, dict):
            self._broadcast({"type": "ota", "device_id": device_id, "id": detail.get("id"), "state": "sent",
                             "text": "sent, SHA-256 %s" % detail.get("final_sha")})
        if kind == "values" and isinstance(detail, dict):
            for name, value in detail.items():
                if view.is_number(value):
                    self._points.setdefault((device_id, name), []).append([when, value])
        self._dirty.add(device_id)
        if not self._push_scheduled and self._loop is not None:
            self._push_scheduled = True
            self._loop.call_later(PUSH_INTERVAL, self._push)

    def _push(self) -> None:
        self._push_scheduled = False
        dirty, self._dirty = self._dirty, set()
        points, self._points = self._points, {}
        if not self._pages or self._emulator is None:
            return
        for device_id in sorted(dirty):
            try:
                state = self._emulator.state(device_id)
            except KeyError:
                continue
            self._broadcast({"type": "device", "device": view.device(state, self._last_seen.get(device_id))})
        for (device_id, name), pts in points.items():
            self._broadcast({"type": "points", "device_id": device_id, "name": name,
                             "points": pts[-view.CHART_POINTS:]})

    def _broadcast(self, message: Dict[str, Any]) -> None:
        text = json.dumps(message)
        for ws, queue in list(self._pages.items()):
            try:
                queue.put_nowait(text)
            except asyncio.QueueFull:
                log.warning("dashboard: a page fell %d messages behind; closing it", QUEUE_MAX)
                self._pages.pop(ws, None)
                asyncio.ensure_future(ws.close(message=b"too slow"))

    def _snapshot(self) -> Dict[str, Any]:
        assert self._emulator is not None
        devices = []
        for device_id in sorted(self._emulator.devices):
            row = view.device(self._emulator.state(device_id), self._last_seen.get(device_id))
            row["history"] = {p["name"]: view.chart_points(self._emulator.history(device_id, p["name"], True))
                              for p in row["properties"] if p["widget"] == "number"}
            devices.append(row)
        return {"type": "snapshot", "time": time.time(), "devices": devices, "refused": list(self._refused),
                "ota": True}

    def _refusal(self, when: float, detail: Any) -> Dict[str, Any]:
        """A refused login as the page lists it, with the listener's name for its port."""
        detail = detail if isinstance(detail, dict) else {}
        port = detail.get("port")
        listener = {self.cloud.password_port: "password", self.cloud.cert_port: "certificate"}.get(port)
        return {"time": when, "reason": detail.get("reason"), "port": port, "listener": listener,
                "peer": detail.get("peer"), "tls_error": detail.get("tls_error")}

    # -- HTTP ------------------------------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            response = await handler(request)
        except _Refused as exc:
            response = web.json_response({"error": exc.message}, status=exc.status)
        except web.HTTPException as exc:  # the router's own answers (404, 405)
            exc.headers.update(_SECURITY_HEADERS)
            raise
        if not response.prepared:  # a WebSocket has sent its headers already
            for key, value in _SECURITY_HEADERS.items():
                response.headers.setdefault(key, value)
        return response

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    def _token_ok(self, token: Any) -> bool:
        return isinstance(token, str) and hmac.compare_digest(token.encode(), self.token.encode())

    def _authorized(self, handler: Callable[..., Awaitable[Any]], json_body: bool = True
                    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """A POST handler behind the token, answering JSON (``{"ok": true, ...}`` or an error).
        ``json_body=False``: the handler reads the body itself (it gets ``{}``)."""
        async def guarded(request: web.Request) -> web.StreamResponse:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not self._token_ok(token.strip()):
                raise _Refused(401, "a write needs the dashboard token (printed by 'run', "
                                    "kept in admin.json): send 'Authorization: Bearer <token>'")
            device_id = request.match_info["device_id"]
            try:
                self.cloud.device(device_id)
            except KeyError:
                raise _Refused(404, "no device %s" % device_id) from None
            try:
                body = await request.json() if json_body and request.can_read_body else {}
            except ValueError:
                raise _Refused(400, "the request body is not JSON") from None
            if not isinstance(body, dict):
                raise _Refused(400, "the request body must be a JSON object")
            result = await handler(request, device_id, body)
            return web.json_response(dict(ok=True, **(result or {})))
        return guarded

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking cloud call (it waits for the broker) off the loop; ValueError -> 409."""
        assert self._loop is not None
        try:
            return await self._loop.run_in_executor(None, fn, *args)
        except ValueError as exc:
            raise _Refused(409, str(exc)) from None

    async def _write(self, request: web.Request, device_id: str, body: Dict[str, Any]) -> None:
        name = request.match_info["name"]
        if "value" not in body:
            raise _Refused(400, 'send {"value": ...}')
        if not self.cloud.device(device_id).thing_id:
            raise _Refused(409, "device %s has no thing: nothing to write to" % device_id)
        current = self.cloud.values(device_id).get(name)
        reported = self.cloud.history(device_id, name)  # the type reference (localcloud/writes.py)
        try:
            value = view.check_write(name, body["value"], current, reported[-1] if reported else None)
        except view.BadWrite as exc:
            raise _Refused(400, str(exc)) from None
        await self._in_thread(self.cloud.set, device_id, name, value)

    async def _detach(self, request: web.Request, device_id: str, body: Dict[str, Any]) -> None:
        if not self.cloud.device(device_id).thing_id:
            raise _Refused(409, "device %s has no thing to detach from" % device_id)
        await self._in_thread(self.cloud.detach, device_id)

    async def _reassign(self, request: web.Request, device_id: str, body: Dict[str, Any]) -> Dict[str, Any]:
        thing_id = body.get("thing_id") or None
        if thing_id is not None and (not isinstance(thing_id, str) or not _THING_ID.match(thing_id)):
            raise _Refused(400, "a thing id is 1-64 letters, digits, '_', '.' or '-' (or leave it out "
                                "for a new thing)")
        return {"thing_id": await self._in_thread(self.cloud.reassign, device_id, thing_id)}

    async def _timezone(self, request: web.Request, device_id: str, body: Dict[str, Any]) -> None:
        offset, until = body.get("offset"), body.get("until")
        if not _int(offset) or abs(offset) > 86400:
            raise _Refused(400, "offset is the UTC offset in whole seconds, within one day")
        if not _int(until) or not 0 <= until < 2 ** 32:
            raise _Refused(400, "until is a unix time in whole seconds (0 to 2^32 - 1)")
        await self._in_thread(self.cloud.send_timezone, device_id, offset, until)

    async def _ota(self, request: web.Request, device_id: str, body: Dict[str, Any]) -> Dict[str, Any]:
        too_big = _Refused(413, "an OTA file here is at most %d bytes" % OTA_FILE_MAX)
        if request.content_length is not None and request.content_length > OTA_FILE_MAX:
            raise too_big
        blob = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            blob += chunk
            if len(blob) > OTA_FILE_MAX:
                raise too_big
        if not blob:
            raise _Refused(400, "send the OTA file as the request body")
        return await self._in_thread(self._send_ota_file, device_id, bytes(blob))

    def _send_ota_file(self, device_id: str, blob: bytes) -> Dict[str, Any]:
        """Check an uploaded OTA file as the device will, then send it (in a worker thread)."""
        try:
            final_sha = hashlib.sha256(read_ota_file(blob)).hexdigest()
        except PackError as exc:
            raise _Refused(400, "not a Python application OTA file: %s" % exc) from None
        with tempfile.TemporaryDirectory(prefix="dashboard-ota-") as tmp:
            path = Path(tmp) / "upload.ota"
            path.write_bytes(blob)
            ota_id = self.cloud.send_ota(device_id, path, final_sha=final_sha)  # serves a copy
        return {"id": ota_id, "sha256": final_sha}

    async def _live(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        try:
            first = await ws.receive(timeout=AUTH_TIMEOUT)
            token = json.loads(first.data).get("token") if first.type == WSMsgType.TEXT else None
        except (asyncio.TimeoutError, ValueError, AttributeError):
            token = None
        if not self._token_ok(token):
            await ws.close(code=4401, message=b"the live stream needs the dashboard token")
            return ws
        queue: "asyncio.Queue[Optional[str]]" = asyncio.Queue(QUEUE_MAX)
        queue.put_nowait(json.dumps(self._snapshot()))
        self._pages[ws] = queue
        sender = asyncio.ensure_future(self._send_all(ws, queue))
        try:
            async for _ in ws:  # the page sends nothing after its token; this waits for the close
                pass
        finally:
            self._pages.pop(ws, None)
            sender.cancel()
        return ws

    async def _send_all(self, ws: web.WebSocketResponse, queue: "asyncio.Queue[Optional[str]]") -> None:
        while True:
            text = await queue.get()
            if text is None or ws.closed:
                return
            try:
                await ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)

