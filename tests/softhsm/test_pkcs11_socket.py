"""PKCS11Socket driven the way transport.Connection drives it, in this process.

The peer is a TLS echo server (Python's ssl, in a thread, on 127.0.0.1) with
the local cloud's server certificate, requiring a client certificate from
the local CA: so the token key really signs the handshake.  Checks the
non-blocking contract (None when nothing is there, partial sends, large
bursts that OpenSSL buffers beyond what the socket signals, EOF) and the
server checks (CA, host name, IP address).
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from typing import Optional

import pytest

from arduino_iot_cloud.errors import TLSError, TransportError
from arduino_iot_cloud.tls import TLSConfig
from arduino_iot_cloud.net.connector import open_connection


class EchoServer:
    """Accepts one TLS client at a time and echoes what it receives, until EOF."""

    def __init__(self, cloud) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cloud.pki.server_cert), str(cloud.pki.server_key))
        self.ctx.load_verify_locations(cafile=cloud.ca_file)
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.peer_cn: Optional[str] = None
        self.close_after: Optional[int] = None  # bytes to echo before closing
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                raw, _ = self.listener.accept()
            except socket.timeout:
                continue
            raw.settimeout(10)
            try:
                with self.ctx.wrap_socket(raw, server_side=True) as conn:
                    subject = dict(x[0] for x in conn.getpeercert()["subject"])
                    self.peer_cn = subject.get("commonName")
                    echoed = 0
                    while self.close_after is None or echoed < self.close_after:
                        data = conn.recv(65536)
                        if not data:
                            break
                        if data == b"burst":  # one TLS record, then silence
                            conn.sendall(b"b" * 16000)
                            continue
                        conn.sendall(data)
                        echoed += len(data)
            except (OSError, ssl.SSLError):
                raw.close()

    def stop(self) -> None:
        self._stop = True
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def echo(hsm_cloud):
    server = EchoServer(hsm_cloud)
    yield server
    server.stop()


@pytest.fixture
def tls_params(token, hsm_device, monkeypatch):
    monkeypatch.setenv("SOFTHSM2_CONF", token.conf)  # read when the engine first loads the module
    return {"keyfile": hsm_device.key_uri, "certfile": hsm_device.cert_uri, "pin": token.pin}


def _exchange(conn, payload: bytes, timeout: float = 20.0) -> bytes:
    """Send payload without blocking while collecting the echo, as the engine would."""
    deadline = time.monotonic() + timeout
    sent, received = 0, bytearray()
    fd = conn.pollable()
    while len(received) < len(payload):
        if time.monotonic() > deadline:
            raise AssertionError("echo stalled: sent %d, received %d of %d" % (sent, len(received), len(payload)))
        want_write = [fd] if sent < len(payload) else []
        readable, writable, _ = select.select([fd], want_write, [], 0.5)
        if writable:
            sent += conn.send(payload[sent:sent + 200_000])
        # Read until nothing is left, like Engine._read; a single read per
        # readiness would stall on bytes OpenSSL already decrypted.
        while len(received) < len(payload):
            data = conn.recv()
            if data is None:
                break
            received += data
    return bytes(received)


def test_nonblocking_echo_of_a_large_payload(hsm_cloud, hsm_device, echo, tls_params):
    tls = TLSConfig(tls_params, ca_override=hsm_cloud.ca_file)
    conn = open_connection("127.0.0.1", echo.port, tls, timeout=10)
    try:
        assert conn.recv() is None  # nothing sent yet: no data, no blocking
        payload = bytes(range(256)) * 8192  # 2 MiB: many partial sends, 16 KiB records
        t0 = time.monotonic()
        assert _exchange(conn, payload) == payload
        assert time.monotonic() - t0 < 20
        assert echo.peer_cn == hsm_device.device_id
    finally:
        conn.close()
    conn.close()  # idempotent


def test_one_read_per_readiness_gets_a_whole_record(hsm_cloud, echo, tls_params):
    # A 16000-byte record arrives at once; the transport reads 4096 bytes at a
    # time.  What OpenSSL decrypted but was not read does not make the socket
    # readable again, so a recv() must hand over the whole decrypted record.
    conn = open_connection("127.0.0.1", echo.port, TLSConfig(tls_params, ca_override=hsm_cloud.ca_file), 10)
    try:
        assert conn.send(b"burst") == 5
        received = bytearray()
        deadline = time.monotonic() + 5
        while len(received) < 16000 and time.monotonic() < deadline:
            readable, _, _ = select.select([conn.pollable()], [], [], 0.5)
            if readable:
                received += conn.recv() or b""
        assert bytes(received) == b"b" * 16000
    finally:
        conn.close()


def test_eof_is_transport_error(hsm_cloud, echo, tls_params):
    echo.close_after = 5
    conn = open_connection("127.0.0.1", echo.port, TLSConfig(tls_params, ca_override=hsm_cloud.ca_file), 10)
    try:
        assert _exchange(conn, b"hello") == b"hello"
        deadline = time.monotonic() + 10
        with pytest.raises(TransportError, match="closed"):
            while time.monotonic() < deadline:
                select.select([conn.pollable()], [], [], 0.5)
                conn.recv()
    finally:
        conn.close()


def test_hostname_is_checked(hsm_cloud, echo, tls_params):
    tls = TLSConfig(dict(tls_params, server_hostname="not-the-broker.example"), ca_override=hsm_cloud.ca_file)
    with pytest.raises(TLSError, match="handshake"):
        open_connection("127.0.0.1", echo.port, tls, timeout=10)
    # The name in the server certificate passes.
    tls = TLSConfig(dict(tls_params, server_hostname="localhost"), ca_override=hsm_cloud.ca_file)
    open_connection("127.0.0.1", echo.port, tls, timeout=10).close()


def test_ip_address_is_checked(hsm_cloud, echo, tls_params):
    tls = TLSConfig(dict(tls_params, server_hostname="127.0.0.2"), ca_override=hsm_cloud.ca_file)
    with pytest.raises(TLSError, match="not valid for 127.0.0.2"):
        open_connection("127.0.0.1", echo.port, tls, timeout=10)


def test_unknown_ca_is_refused(hsm_cloud, echo, tls_params):
    # The production CA shipped with the package did not sign the local server.
    tls = TLSConfig(tls_params)
    with pytest.raises(TLSError, match="certificate"):
        open_connection("127.0.0.1", echo.port, tls, timeout=10)


def test_verification_off_connects_to_any_server(hsm_cloud, echo, tls_params):
    tls = TLSConfig(dict(tls_params, verify_mode=ssl.CERT_NONE, server_hostname="not-the-broker.example"))
    conn = open_connection("127.0.0.1", echo.port, tls, timeout=10)
    try:
        assert _exchange(conn, b"x" * 100) == b"x" * 100
    finally:
        conn.close()


def test_handshake_is_bounded_by_the_timeout(tls_params, hsm_cloud):
    silent = socket.create_server(("127.0.0.1", 0))  # accepts TCP, never answers TLS
    try:
        tls = TLSConfig(tls_params, ca_override=hsm_cloud.ca_file)
        t0 = time.monotonic()
        with pytest.raises(TransportError, match="timed out"):
            open_connection("127.0.0.1", silent.getsockname()[1], tls, timeout=1.0)
        assert time.monotonic() - t0 < 5
    finally:
        silent.close()


def test_safe_uri_drops_pin_attributes():
    from arduino_iot_cloud.pkcs11 import safe_uri

    assert safe_uri("pkcs11:token=a;object=b;pin-value=1234;type=private") == \
        "pkcs11:token=a;object=b;type=private"
    assert safe_uri("pkcs11:token=a?pin-source=file:/p&module-path=/m.so") == "pkcs11:token=a?module-path=/m.so"
    assert safe_uri("pkcs11:token=a?pin-value=9") == "pkcs11:token=a"


def test_tlsconfig_repr_hides_the_pin(tls_params):
    assert tls_params["pin"] not in repr(TLSConfig(tls_params))


# -- the asyncio driver's connect: the handshake waits on the loop -----------------------------


async def open_connection_async(host, port, tls, timeout):
    """What the asyncio driver does: look the name up on the loop, then step the
    connect whenever the loop says its socket is ready (net/wait.py)."""
    import asyncio

    from arduino_iot_cloud.compat import now_ms
    from arduino_iot_cloud.net.connector import start_connection
    from arduino_iot_cloud.net.wait import IOWaiter, resolve_async

    address = await resolve_async(host, port)
    attempt = start_connection(host, port, tls, int(timeout * 1000), now_ms(), address)
    waiter = IOWaiter(asyncio.Event())
    try:
        while True:
            conn = attempt.step(now_ms())
            if conn is not None:
                return conn
            await waiter.wait((attempt.pollable(), attempt.wants_write), max(0, attempt.deadline - now_ms()))
    finally:
        waiter.close()

async def test_async_connect_hand_shakes_on_the_loop(hsm_cloud, hsm_device, echo, tls_params):
    tls = TLSConfig(tls_params, ca_override=hsm_cloud.ca_file)
    conn = await open_connection_async("127.0.0.1", echo.port, tls, timeout=10)
    try:
        assert _exchange(conn, b"async hello" * 1000) == b"async hello" * 1000
        assert echo.peer_cn == hsm_device.device_id
    finally:
        conn.close()


async def test_async_handshake_does_not_block_the_loop(hsm_cloud, tls_params):
    import asyncio

    silent = socket.create_server(("127.0.0.1", 0))  # accepts TCP, never answers TLS
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    task = asyncio.ensure_future(ticker())
    try:
        tls = TLSConfig(tls_params, ca_override=hsm_cloud.ca_file)
        t0 = time.monotonic()
        with pytest.raises(TransportError, match="timed out"):
            await open_connection_async("127.0.0.1", silent.getsockname()[1], tls, timeout=1.0)
        assert time.monotonic() - t0 < 5
        assert ticks >= 10  # the loop ran other work during the 1 s wait
    finally:
        task.cancel()
        silent.close()


async def test_async_handshake_failure_is_transport_error(hsm_cloud, echo, tls_params):
    tls = TLSConfig(dict(tls_params, server_hostname="not-the-broker.example"), ca_override=hsm_cloud.ca_file)
    with pytest.raises(TLSError, match="handshake"):
        await open_connection_async("127.0.0.1", echo.port, tls, timeout=10)
    tls = TLSConfig(dict(tls_params, server_hostname="127.0.0.2"), ca_override=hsm_cloud.ca_file)
    with pytest.raises(TLSError, match="not valid for 127.0.0.2"):
        await open_connection_async("127.0.0.1", echo.port, tls, timeout=10)
