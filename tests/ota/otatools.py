"""Building OTA files and serving them, for the OTA tests (device side).

The e2e tests pack real files with the cloud side's packer (ota/pack.py); the
format tests, and the damaged files the packer would never write, are made
here from the format's facts alone, independent of it: a deterministic ustar archive
(tarfile), a literal-only LZSS stream (every byte as flag 1 + 8 bits, MSB
first: a valid stream any decoder of the format must read), and the 20-byte
header.  HttpsFileServer serves a directory over HTTPS on 127.0.0.1 with a
certificate from the local cloud's CA, with Range support and switches to
misbehave (drop a connection mid-body, ignore Range, lie about lengths).
"""

import binascii
import hashlib
import http.server
import io
import os
import ssl
import struct
import tarfile
import threading

MAGIC = 0x50594150
VERSION = b"\x00\x00\x00\x00\x00\x00\x00\x40"


def literal_lzss(data):
    """data as an LZSS stream of literals only (9 bits per byte, zero padding)."""
    acc = 0
    nbits = 0
    out = bytearray()
    for byte in data:
        acc = (acc << 9) | 0x100 | byte
        nbits += 9
        while nbits >= 8:
            out.append((acc >> (nbits - 8)) & 0xFF)
            nbits -= 8
        acc &= (1 << nbits) - 1
    if nbits:
        out.append((acc << (8 - nbits)) & 0xFF)
    return bytes(out)


def bits_to_bytes(bits):
    """A string of '0'/'1' (spaces ignored) as bytes, MSB first, zero padded."""
    bits = bits.replace(" ", "")
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))


def ota_file(compressed, magic=MAGIC, length_delta=0, crc_delta=0):
    """The OTA file of an already compressed payload (deltas make broken headers)."""
    body = struct.pack("<I", magic) + VERSION + compressed
    crc = (binascii.crc32(body) + crc_delta) & 0xFFFFFFFF
    return struct.pack("<II", len(body) + length_delta, crc) + body


def make_tar(files, extra=()):
    """A deterministic ustar archive: files maps 'path' -> bytes (or None: a directory);
    extra: more TarInfo/bytes pairs (for hostile members)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            data = files[name]
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.uname = info.gname = ""
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, None if data is None else io.BytesIO(data))
    return buf.getvalue()


def app_files(version, extra=b""):
    """A small application tree: main.py with VERSION and a helper package."""
    main = b"VERSION = %d\n" % version
    return {"main.py": main, "lib": None, "lib/helper.py": b"def double(x):\n    return 2 * x\n" + extra}


def bundle(files, **kw):
    """(ota file bytes, sha256 of the tar payload) of an application."""
    payload = make_tar(files)
    return ota_file(literal_lzss(payload), **kw), hashlib.sha256(payload).digest()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        server.connections.add(self.client_address)
        name = self.path.split("?")[0].lstrip("/")
        path = os.path.join(server.directory, name)
        if "/" in name or not os.path.isfile(path):
            self.send_error(404)
            return
        with open(path, "rb") as f:
            data = f.read()
        total = len(data)
        first, last = 0, total - 1
        rng = self.headers.get("Range")
        partial = rng is not None and rng.startswith("bytes=") and not server.ignore_range
        if partial:
            a, b = rng[6:].split("-")
            first = int(a)
            last = min(int(b), total - 1) if b else total - 1
            if first >= total:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % total)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[first:last + 1]
        self.send_response(206 if partial else 200)
        if partial:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (first, last, total))
        self.send_header("Content-Length", str(len(body)))
        if server.close_each:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if server.drop_after is not None and server.drops > 0:
            # Send part of the body, then cut the connection.
            server.drops -= 1
            self.wfile.write(body[:server.drop_after])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        for i in range(0, len(body), 4096):
            self.wfile.write(body[i:i + 4096])
            if server.delay:
                import time

                time.sleep(server.delay)


class HttpsFileServer:
    """Serves `directory` on https://127.0.0.1:PORT/NAME with a certificate from the CA
    in `pki_dir` (the local cloud's pki/: server.crt/server.key signed by ca.crt)."""

    def __init__(self, directory, certfile, keyfile):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.directory = directory
        self.httpd.requests = []
        self.httpd.connections = set()
        self.httpd.ignore_range = False
        self.httpd.drop_after = None
        self.httpd.drops = 0
        self.httpd.delay = 0
        self.httpd.close_each = False  # True: "Connection: close" on every response
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name):
        return "https://127.0.0.1:%d/%s" % (self.port, name)

    @property
    def requests(self):
        return self.httpd.requests

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# --- the device application and its runs -----------------------------------------------------

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT_DIR, "examples")
LAUNCHER = os.path.join(EXAMPLES, "ota_device.py")


def example_app(version, crash=False, padding=0, wrong_password=False, wrong_device_id=False):
    """The example application's files at `version` (crash: it raises at start;
    wrong_password: start() raises ConnectRefused; wrong_device_id: it logs in but
    never attaches; padding: an incompressible data file of that many bytes)."""
    with open(os.path.join(EXAMPLES, "ota_app", "main.py"), "rb") as f:
        src = f.read()
    assert b"VERSION = 1\n" in src
    src = src.replace(b"VERSION = 1\n", b"VERSION = %d\n" % version)
    if crash:
        src = src.replace(b"client.start()", b"raise RuntimeError('version %d fails at start')\nclient.start()"
                          % version, 1)
    if wrong_password:
        src = src.replace(b'password=getenv("SECRET_KEY")', b'password="not-the-password"')
        assert b"not-the-password" in src
    if wrong_device_id:
        # The username stays right: the broker accepts the login, the thing never comes.
        src = src.replace(b"ArduinoCloudClient(device_id=device_id,",
                          b'ArduinoCloudClient(device_id="00000000-0000-4000-8000-0000000000f2",')
        assert b"0000000000f2" in src
    files = {"main.py": src}
    if padding:
        import random

        rnd = random.Random(padding)
        files["data.bin"] = bytes(rnd.getrandbits(8) for _ in range(padding))
    return files


class UpWatcher:
    """Everything a device publishes on its c/up, read by a paho client on the local
    cloud's admin listener: ota_begin (sha256 bytes) and ota_progress (id, state, data,
    time) entries, in order."""

    def __init__(self, cloud, device_id):
        import cbor2
        import paho.mqtt.client as mqtt

        self._cbor2 = cbor2
        self.entries = []
        self.raw = []
        self._cond = threading.Condition()
        creds = cloud.admin_credentials()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ota-watch-%s" % device_id)
        self.client.username_pw_set(creds["user"], creds["password"])
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe("/a/d/%s/c/up" % device_id, 1)
        self.client.connect(cloud.host, cloud.admin_port)
        self.client.loop_start()
        assert subscribed.wait(10), "the watcher could not subscribe"

    def _on_message(self, client, userdata, msg):
        obj = self._cbor2.loads(msg.payload)
        entry = None
        if obj.tag == 0x010000:
            entry = ("ota_begin", obj.value[0])
        elif obj.tag == 0x010200:
            entry = ("ota_progress",) + tuple(obj.value)
        with self._cond:
            self.raw.append(msg.payload)
            if entry is not None:
                self.entries.append(entry)
            self._cond.notify_all()

    def mark(self):
        with self._cond:
            return len(self.entries)

    def wait(self, predicate, what, since=0, timeout=20.0):
        """The first entry from `since` on that predicate accepts; its index too."""
        import time

        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(since, len(self.entries)):
                    if predicate(self.entries[i]):
                        return i, self.entries[i]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %s within %.0f s; seen: %s" % (what, timeout, self.describe()))
                self._cond.wait(left)

    def begin(self, sha, since=0, timeout=20.0):
        return self.wait(lambda e: e[0] == "ota_begin" and e[1] == sha, "OtaBeginUp %s" % sha.hex()[:12],
                         since, timeout)

    def state(self, ota_id, state, since=0, timeout=20.0):
        return self.wait(lambda e: e[0] == "ota_progress" and e[1] == ota_id and e[2].value == state,
                         "OtaProgressCmdUp state %d" % state, since, timeout)

    def states(self, ota_id):
        with self._cond:
            return [(e[2].value, e[3]) for e in self.entries if e[0] == "ota_progress" and e[1] == ota_id]

    def describe(self):
        out = []
        for e in self.entries:
            if e[0] == "ota_begin":
                out.append("begin(%s)" % e[1].hex()[:12])
            else:
                out.append("progress(%s, %r, %r)" % (e[1].hex()[:6], e[2], e[3]))
        return ", ".join(out)

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


class Supervisor:
    """Runs the launcher the way a supervisor would: started again whenever it ends
    (restart_on: exit statuses that restart it; None: any), until stop().  Output of
    every run goes to one log."""

    def __init__(self, argv, env, log_path, restart_on=None, cwd=None, preexec=None):
        import subprocess

        self.preexec = preexec
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.restart_on = restart_on
        self.log_path = log_path
        self.exits = []
        self.starts = 0
        self._out = open(log_path, "ab")
        self._subprocess = subprocess
        self._stopping = False
        self.proc = None
        self._lock = threading.Lock()
        self._start()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _start(self):
        self.starts += 1
        self.proc = self._subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=self._out,
                                           stderr=self._subprocess.STDOUT, stdin=self._subprocess.DEVNULL,
                                           preexec_fn=self.preexec)

    def _watch(self):
        import time

        while not self._stopping:
            with self._lock:
                code = self.proc.poll()
                if code is not None and not self._stopping:
                    self.exits.append(code)
                    if self.restart_on is None or code in self.restart_on:
                        self._start()
            time.sleep(0.05)

    def kill(self):
        """A power cut: SIGKILL; the supervisor starts it again."""
        with self._lock:
            self.proc.kill()

    def output(self):
        if not self._out.closed:
            self._out.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self._out.closed:
            return
        self._stopping = True
        with self._lock:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except self._subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        self._out.close()
