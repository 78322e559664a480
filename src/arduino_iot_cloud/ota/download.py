# Non-blocking HTTPS download in Range requests, taken in steps.
#
# Download(url, tls, sink, ...) fetches the file in chunks of `chunk_size`
# bytes, one GET with "Range: bytes=a-b" each, and passes the body to
# sink.feed() as it arrives.  The requests share one HTTP/1.1 connection
# while the server keeps it open (one TLS handshake per download, not per
# chunk).  A connection that fails or breaks off is opened again after a
# pause and the download goes on from the last byte received, up to
# `retries` times in a row (any progress resets the count); a kept-alive
# connection the server closed between two requests is just opened again.
# step(now) does what the socket allows at once (the connect, or at most
# _READS_PER_STEP reads) and returns True when the whole file has been
# received; failures raise OtaError with the C++ library's codes.  The TCP
# connect and TLS handshake are net/connector.py's, with the broker's TLS
# rules (CA and host name checked).

from ..compat import const
from ..errors import RemoteError, TLSError
from ..net.connector import start_connection
from . import errors
from .errors import OtaError

_READS_PER_STEP = const(4)
_HEAD_MAX = const(8192)


def parse_url(url):
    """(host, port, path) of an https:// URL; OtaError(URL_PARSE) otherwise."""
    if not isinstance(url, str) or len(url.encode("utf-8")) > 256:
        raise OtaError(errors.URL_PARSE, "the URL is longer than 256 bytes")
    if not url.startswith("https://"):
        raise OtaError(errors.URL_PARSE, "only https:// URLs are accepted, not %r" % url.split(":")[0])
    rest = url[8:]
    slash = rest.find("/")
    hostport, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    if "@" in hostport or not hostport or " " in url or "\r" in url or "\n" in url:
        raise OtaError(errors.URL_PARSE, "cannot read host and path from the URL")
    port = 443
    if hostport.startswith("["):  # [IPv6]:port
        end = hostport.find("]")
        host, tail = hostport[1:end], hostport[end + 1:]
        if end < 0 or (tail and not tail.startswith(":")):
            raise OtaError(errors.URL_PARSE, "bad IPv6 host in the URL")
        tail = tail[1:]
    elif ":" in hostport:
        host, tail = hostport.split(":", 1)
    else:
        host, tail = hostport, ""
    if tail:
        try:
            port = int(tail)
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise OtaError(errors.URL_PARSE, "bad port in the URL")
    if not host:
        raise OtaError(errors.URL_PARSE, "no host in the URL")
    return host, port, path


class Download:
    def __init__(self, url, tls, sink, now, chunk_size=65536, retries=5, retry_ms=1000, stall_ms=20000,
                 connect_timeout_ms=10000):
        self.host, self.port, self.path = parse_url(url)
        self.tls = tls
        self.sink = sink
        self.chunk_size = chunk_size
        self.retries = retries
        self.retry_ms = retry_ms
        self.stall_ms = stall_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.offset = 0          # bytes received and passed on
        self.total = None        # the file's size, from the first response
        self.requests = 0
        self._failures = 0       # in a row
        self._reached = False    # a server answered at least once
        self._connector = None
        self._conn = None
        self._request = b""
        self._head = None        # response head being read (bytearray), None in the body
        self._body_left = 0
        self._skip = 0           # bytes to drop (a 200 answer to a Range request)
        self._keep = False       # the server keeps the connection open after this response
        self._reused = False     # the request under way went on a kept-alive connection
        self._next_at = now      # when to open the next connection
        self._last_data = now

    def close(self):
        if self._connector is not None:
            self._connector.close()
            self._connector = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def step(self, now):
        """Advance; True when the whole file was received.  Raises OtaError."""
        try:
            return self._step(now)
        except RemoteError as e:
            if isinstance(e, OtaError):
                self.close()
                raise
            if isinstance(e, TLSError):  # the server is not who it should be: trying again will not help
                self.close()
                raise OtaError(errors.SERVER_CONNECT, str(e))
            self._lost(now, str(e))
            return False
        except OSError as e:
            self._lost(now, "socket error: %s" % e)
            return False

    def _step(self, now):
        if self.total is not None and self.offset >= self.total:
            return True
        if self._conn is None and self._connector is None:
            if now < self._next_at:
                return False
            self._last_data = now
            self._connector = start_connection(self.host, self.port, self.tls, self.connect_timeout_ms, now)
        if self._connector is not None:
            conn = self._connector.step(now)
            if conn is None:
                return False
            self._connector = None
            self._conn = conn
            self._send_request(False)
            return False  # the handshake was this step's work
        if self._request:
            n = self._conn.send(self._request)
            self._request = self._request[n:]
            if self._request:
                return self._stalled(now)
        for _ in range(_READS_PER_STEP):
            try:
                data = self._conn.recv()
            except RemoteError:
                if self._reused and self._head is not None and not self._head:
                    # The server closed the kept-alive connection before answering:
                    # open a new one at once, not a failure.
                    self.close()
                    self._next_at = now
                    return False
                raise
            if data is None:
                return self._stalled(now)
            self._last_data = now
            if self._head is not None:
                data = self._read_head(data)
                if data is None:
                    continue
            if self._receive(data):
                if self.total is not None and self.offset >= self.total:
                    self.close()
                    return True
                if self._keep:
                    self._send_request(True)
                else:
                    self.close()
                return False
        return False

    def _send_request(self, reused):
        self._request = self._request_bytes()
        self._head = bytearray()
        self._reused = reused
        self.requests += 1

    def _request_bytes(self):
        end = self.offset + self.chunk_size - 1
        if self.total is not None:
            end = min(end, self.total - 1)
        host = "[%s]" % self.host if ":" in self.host else self.host
        if self.port != 443:
            host = "%s:%d" % (host, self.port)
        return ("GET %s HTTP/1.1\r\nHost: %s\r\nRange: bytes=%d-%d\r\nUser-Agent: arduino-iot-cloud-py\r\n"
                "\r\n" % (self.path, host, self.offset, end)).encode("utf-8")

    def _stalled(self, now):
        if now - self._last_data > self.stall_ms:
            self._lost(now, "no data from the server for %d ms" % self.stall_ms)
        return False

    def _lost(self, now, why):
        # A failed connect or a broken transfer: try again from self.offset.
        self.close()
        self._failures += 1
        if self._failures > self.retries:
            if self._reached:
                raise OtaError(errors.OTA_DOWNLOAD, "download broke off at byte %d: %s" % (self.offset, why))
            raise OtaError(errors.SERVER_CONNECT, "cannot reach %s:%d: %s" % (self.host, self.port, why))
        self._next_at = now + self.retry_ms * (1 << min(self._failures - 1, 5))

    def _read_head(self, data):
        # Collect the response head; return the body bytes after it, or None.
        self._head.extend(data)
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _HEAD_MAX:
                raise OtaError(errors.PARSE_HTTP_HEADER, "the HTTP response head is longer than %d bytes"
                               % _HEAD_MAX)
            return None
        head = bytes(self._head[:end])
        body = bytes(self._head[end + 4:])
        self._head = None
        self._parse_head(head)
        return body

    def _parse_head(self, head):
        lines = head.split(b"\r\n")
        status = lines[0].split(b" ")
        if len(status) < 2 or not status[0].startswith(b"HTTP/"):
            raise OtaError(errors.PARSE_HTTP_HEADER, "not an HTTP response")
        try:
            code = int(status[1])
        except ValueError:
            raise OtaError(errors.PARSE_HTTP_HEADER, "bad HTTP status line")
        fields = {}
        for line in lines[1:]:
            colon = line.find(b":")
            if colon > 0:
                fields[str(line[:colon].strip(), "latin-1").lower()] = str(line[colon + 1:].strip(), "latin-1")
        length = fields.get("content-length")
        try:
            length = None if length is None else int(length)
        except ValueError:
            raise OtaError(errors.PARSE_HTTP_HEADER, "bad Content-Length")
        self._reached = True
        self._keep = fields.get("connection", "").lower() != "close" and status[0] == b"HTTP/1.1"
        if code == 206:
            first, total = self._content_range(fields.get("content-range", ""))
            if first != self.offset:
                raise OtaError(errors.HTTP_RESPONSE, "asked for bytes from %d, the server sent from %d"
                               % (self.offset, first))
            self._skip = 0
        elif code == 200:
            # The server ignored Range: the whole file comes; drop what we have.
            total = length
            self._skip = self.offset
        elif code == 416 and self.total is not None and self.offset >= self.total:
            self._body_left = 0
            return
        else:
            raise OtaError(errors.HTTP_RESPONSE, "the server answered HTTP %d" % code)
        if length is None or total is None:
            raise OtaError(errors.PARSE_HTTP_HEADER, "the response does not say its length")
        if self.total is None:
            self.total = total
            if hasattr(self.sink, "expect"):
                self.sink.expect(total)
        elif total != self.total:
            raise OtaError(errors.HTTP_RESPONSE, "the file's size changed from %d to %d bytes during the download"
                           % (self.total, total))
        self._body_left = length

    @staticmethod
    def _content_range(value):
        # "bytes first-last/total"
        try:
            unit, spec = value.split(" ", 1)
            span, total = spec.split("/")
            first = int(span.split("-")[0])
            return first, int(total)
        except ValueError:
            raise OtaError(errors.PARSE_HTTP_HEADER, "bad Content-Range %r" % value)

    def _receive(self, data):
        # Body bytes; True when this response's body is complete.
        if self._skip:
            drop = min(self._skip, len(data))
            self._skip -= drop
            self._body_left -= drop
            data = data[drop:]
        if data:
            data = data[:self._body_left]
            self.sink.feed(data)
            self.offset += len(data)
            self._body_left -= len(data)
            self._failures = 0
        return self._body_left <= 0
