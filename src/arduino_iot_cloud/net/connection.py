# The socket engine's open connection: one non-blocking TLS socket, and
# what its errors mean.
#
# recv() returns the bytes available now (None when there are none) and
# send() writes what the socket takes now; EOF and socket errors become
# TransportError (TLSError, with the reason in words, for TLS).  Both runtimes
# run this file; their different socket methods are bridged here, in the one
# place they meet.  Opening a connection is connector.py's job.

import socket

from ..errors import TLSError, TransportError

_RECV_SIZE = 4096
# Linux: acknowledge received bytes at once instead of after the delayed-ACK
# timer (40 ms).  A broker with Nagle's algorithm on (mosquitto's default,
# set_tcp_nodelay false) holds every small answer until its previous segment
# is acknowledged, so each request/answer step of an attach waited for that
# timer (benchmarks/README.md has the packet trace).  The kernel drops back
# to delayed ACKs by itself, so the option is set again after every read.
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
# MicroPython reads into one buffer kept per connection: its stream read(n)
# allocates n bytes before it knows whether anything is there, so read(4096)
# on every update() would ask a long-running board's (fragmented) heap for a
# fresh 4 KB block many times a second.  One mbedTLS read returns at most one
# record, so a smaller buffer only means more reads for large messages.
_STREAM_BUF = 1024

try:
    from ssl import SSLError as _SSLError
except ImportError:  # MicroPython: mbedTLS failures are OSErrors carrying MBEDTLS_ERR_* text
    _SSLError = None

_UNTRUSTED = ("the broker's certificate is not signed by a trusted CA "
              "(check ssl_params cafile/cadata, or ARDUINO_IOT_CLOUD_CA)")
_REFUSED = "the broker refused this device's client certificate"
# (text in the TLS library's error, lower case; the reason in words).  First match wins.
_TLS_REASONS = (
    ("certificate has expired", "the broker's certificate has expired (or the device's clock is wrong)"),
    ("not yet valid", "the broker's certificate is not valid yet (is the device's clock right?)"),
    ("mismatch", "the broker's certificate is not valid for the host name HOST"),
    ("self-signed certificate", _UNTRUSTED),
    ("self signed certificate", _UNTRUSTED),
    ("unable to get local issuer", _UNTRUSTED),
    ("unable to get issuer", _UNTRUSTED),
    ("alert unknown ca", _REFUSED + " (not signed by a CA it trusts)"),
    ("alert bad certificate", _REFUSED),
    ("alert certificate unknown", _REFUSED),
    ("certificate required", "the broker requires a client certificate"),
    ("handshake failure", "the broker refused the TLS handshake (no common cipher or certificate)"),
    # mbedTLS verify texts (MicroPython raises them as ValueError); some do
    # not say which check failed.
    ("not correctly signed by the trusted ca", _UNTRUSTED),
    ("validity has expired", "the broker's certificate has expired (or the device's clock is wrong)"),
    ("validity starts in the future", "the broker's certificate is not valid yet (is the device's clock right?)"),
    ("does not match with the expected cn", "the broker's certificate is not valid for the host name HOST"),
    ("x509_cert_verify_failed", "the broker's certificate was rejected (untrusted CA, wrong host name or expired)"),
    ("-9984", "the broker's certificate was rejected (untrusted CA, wrong host name or expired)"),
    ("fatal_alert", "the broker ended TLS with a fatal alert (did it refuse the client certificate?)"),
    ("-30592", "the broker ended TLS with a fatal alert (did it refuse the client certificate?)"),
)
# The broker's alerts that say it refuses this device's certificate (or wants
# one): retrying cannot fix them (TLSError.permanent).  On MicroPython the
# broker is only seen closing the connection (EPIPE), which a lost link can
# also cause: retried.
_REFUSALS = ("alert unknown ca", "alert bad certificate", "alert certificate unknown", "certificate required")


def tls_error(e, host=None, port=None, handshake=True):
    """A TLSError with the reason in words if e is a TLS failure, else None.

    During the handshake every ssl error is a TLS failure; afterwards only the
    ones with a known reason are (an EOF mid-session is just a lost link).
    """
    text = " ".join(str(e).split())  # mbedTLS texts come wrapped in newlines
    low = text.lower()
    where = "TLS with %s:%d" % (host, port) if host is not None else "TLS session"
    for needle, reason in _TLS_REASONS:
        if needle in low:
            return TLSError("%s failed: %s [%s]" % (where, reason.replace("HOST", str(host)), text),
                            needle in _REFUSALS)
    if handshake and ((_SSLError is not None and isinstance(e, _SSLError)) or "mbedtls" in low):
        return TLSError("%s failed during the handshake [%s]" % (where, text))
    return None


try:
    from ssl import SSLWantReadError, SSLWantWriteError
except ImportError:  # MicroPython: non-blocking reads return None instead
    class SSLWantReadError(Exception):
        pass

    class SSLWantWriteError(Exception):
        pass

try:
    from errno import EAGAIN, EINPROGRESS
except ImportError:  # a MicroPython build without errno
    EAGAIN, EINPROGRESS = 11, 115
# The runtime's own numbers (lwIP boards differ from Linux) plus the usual ones.
WOULD_BLOCK = (EAGAIN, EINPROGRESS, 11, 35, 115)


def errno_of(e):
    return e.args[0] if e.args and isinstance(e.args[0], int) else None


class Connection:
    """A connected, non-blocking TLS socket.

    handshake=(tls, host, port) while the TLS handshake may still be under
    way (MicroPython): until the first bytes go out, errors are reported as
    handshake failures.
    """

    def __init__(self, sock, raw, handshake=None):
        self.sock = sock
        self.raw = raw  # the TCP socket under the TLS layer, for poll/fileno
        self._handshake = handshake
        self._read = getattr(sock, "recv", None) if hasattr(sock, "fileno") else sock.read
        self._write = getattr(sock, "send", None) if hasattr(sock, "fileno") else sock.write
        if not hasattr(sock, "fileno") and hasattr(sock, "readinto"):
            self._buf = bytearray(_STREAM_BUF)
            self._view = memoryview(self._buf)
            self._read = self._read_into
        self.closed = False
        # Until the first bytes of MQTT arrive, reads that only take TLS
        # records (CPython's session tickets) acknowledge at once as well.
        # (CPython's TLS socket took over the TCP one's descriptor: options go to it.)
        self._tcp = sock if hasattr(sock, "setsockopt") else raw
        self._quickack = _QUICKACK is not None and hasattr(self._tcp, "setsockopt")
        self._greeted = False

    def _ack_now(self):
        try:
            self._tcp.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except OSError:
            self._quickack = False

    def _read_into(self, _size):
        # Like read(): None when nothing is there, b"" at EOF, else the bytes read.
        n = self.sock.readinto(self._buf)
        if n is None:
            return None
        return bytes(self._view[:n])

    def pollable(self):
        """The object to give select.poll / the event loop (net/wait.py)."""
        return self.sock

    def recv(self):
        try:
            data = self._read(_RECV_SIZE)
        except (SSLWantReadError, SSLWantWriteError):
            if self._quickack and not self._greeted:
                self._ack_now()
            return None
        except OSError as e:
            if errno_of(e) in WOULD_BLOCK:
                return None
            raise self._lost(e)
        except ValueError as e:  # MicroPython: mbedTLS's certificate check, in the handshake
            if self._handshake is None:
                raise
            raise self._lost(e)
        if data is None:
            return None
        if not data:
            raise TransportError("connection closed by the broker")
        if self._quickack:
            self._greeted = True
            self._ack_now()
        return data

    def send(self, data):
        try:
            n = self._write(data)
        except (SSLWantReadError, SSLWantWriteError):
            return 0
        except OSError as e:
            if errno_of(e) in WOULD_BLOCK:
                return 0
            raise self._lost(e, after_write=True)
        except ValueError as e:  # MicroPython: mbedTLS's certificate check, in the handshake
            if self._handshake is None:
                raise
            raise self._lost(e)
        if n:
            self._handshake = None  # TLS sends application data only after the handshake
        return n or 0

    def _lost(self, e, after_write=False):
        if self._handshake is not None:
            return handshake_error(e, *self._handshake)
        return (tls_error(e, handshake=False) or (after_write and self._alert())
                or TransportError("connection lost: %s" % e))

    def _alert(self):
        # A write failed: the peer may have sent a TLS alert before closing (a
        # broker refusing our certificate after a TLS 1.3 handshake).  Read it.
        try:
            self._read(_RECV_SIZE)
        except OSError as e:
            return tls_error(e, handshake=False)
        except Exception:  # noqa: BLE001 - best effort only, the write error stands
            return None
        return None

    def close(self):
        if self.closed:
            return
        self.closed = True
        for s in (self.sock, self.raw):
            try:
                s.close()
            except OSError:
                pass


def handshake_error(e, tls, host, port):
    # The TCP connection is up: what fails now is TLS.  MicroPython reports a
    # failed certificate check as ValueError (mbedTLS's verify text), and a
    # broker that refuses our certificate in a TLS 1.2 handshake as EPIPE or
    # ECONNRESET; both would otherwise escape or say nothing useful.
    refusal = tls.take_refusal()
    if refusal is not None:  # our own certificate check ended the handshake
        name = tls.server_hostname or host
        return TLSError("TLS with %s:%d failed: %s" % (host, port, refusal.replace("HOST", str(name))))
    err = tls_error(e, host, port)
    if err is not None:
        return err
    text = " ".join(str(e).split())
    if isinstance(e, ValueError):
        return TLSError("TLS with %s:%d failed: the broker's certificate was rejected [%s]" % (host, port, text))
    if tls.client_cert and errno_of(e) in (32, 104):
        return TLSError("TLS with %s:%d failed: the broker closed the connection during the handshake "
                        "(did it refuse this device's client certificate?) [%s]" % (host, port, text))
    return TransportError("TLS with %s:%d failed: %s" % (host, port, text))
