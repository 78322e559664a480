"""Build OTA files for Python application bundles (CPython only: the cloud side).

An OTA file is what the cloud serves at the URL of an OtaUpdateCmdDown::

    offset  size  field (little endian)
    0       4     len      = 12 + length of the LZSS stream (magic + version + stream)
    4       4     crc32    IEEE CRC-32 (zlib) over magic + version + stream
    8       4     magic    0x50594150 for a Python application bundle
    12      8     version  00 00 00 00 00 00 00 40, as the C++ tools write it (not read)
    20      ...   the LZSS stream of the payload

The payload is a POSIX ustar archive of the application directory, built
deterministically (:func:`app_tar`), so the same directory always gives the same
bytes and the same SHA-256: that SHA-256 is the application's identity
(OtaBeginUp, finalSha256).

LZSS, the format the Arduino C++ library decodes
------------------------------------------------
A ring buffer of N = 2048 bytes, first filled with spaces, written from
position N - F = 2031 on.  The stream is a sequence of tokens, bits MSB first:

* ``1`` + 8 bits: a literal byte;
* ``0`` + 11 bits ring position + 4 bits length L: copy L + 2 bytes (2..17) from
  that ring position, one byte at a time (so a copy may overlap what it writes).

A match is only worth a token when it is longer than P = 1 byte.  After the last
token the stream is padded with zero bits to a whole byte.  A decoder reads as
long as bytes come (the file length bounds it), and padding of at most 7 bits
can never complete a token: a ``0`` flag needs 15 more bits, a ``1`` flag 8.

Because the ring starts as N - F spaces followed by the data, the decoder's ring
position of any byte equals its index in ``b" " * (N - F) + data`` modulo N; the
encoder searches that virtual buffer, never reaching the N - F .. N - 1 ring
cells that hold nothing before the data fills them.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import os
import stat
import struct
import tarfile
from typing import List, Tuple

from .errors import OtaError
from .lzss import LZSSDecoder
from .otafile import HEADER_SIZE, MAGIC as MAGIC_PYTHON_APP, read_header

EI = 11  # bits of a ring position
EJ = 4  # bits of a match length
P = 1  # a match must be longer than this
N = 1 << EI  # ring size: 2048
F = (1 << EJ) + P  # longest match: 17
MIN_MATCH = P + 1  # 2

VERSION = bytes(7) + b"\x40"

# Directories never packed: CPython writes them beside the sources when it imports
# them, which would change an installed application's SHA-256.
SKIPPED_DIRS = ("__pycache__",)


class PackError(ValueError):
    """An application directory that cannot be packed, or a malformed OTA file."""


# -- LZSS ------------------------------------------------------------------------------------

def lzss_encode(data: bytes) -> bytes:
    """Compress ``data`` into the LZSS stream the C++ library decodes (see the module doc).

    Greedy: at each position, the longest match (up to 17 bytes) within the last
    N - 1 bytes, the nearest one among equals.  The search runs in C through
    ``bytes.rfind`` on the window: each find is followed by a byte-wise extension,
    and the next find asks for one byte more than the best so far.
    """
    pad = N - F
    buf = b" " * pad + bytes(data)
    end = len(buf)
    out = bytearray()
    acc = 0  # pending bits, the oldest highest
    nbits = 0
    i = pad
    while i < end:
        longest = min(F, end - i)
        lo = max(0, i - (N - 1))
        best_len, best_pos = 0, 0
        want = MIN_MATCH
        while want <= longest:
            # an occurrence starting before i; it may run into i (an overlapping copy)
            pos = buf.rfind(buf[i:i + want], lo, i + want - 1)
            if pos < 0:
                break
            n = want
            while n < longest and buf[pos + n] == buf[i + n]:
                n += 1
            best_len, best_pos = n, pos
            want = n + 1
        if best_len > P:
            acc = (acc << (1 + EI + EJ)) | ((best_pos & (N - 1)) << EJ) | (best_len - MIN_MATCH)
            nbits += 1 + EI + EJ
            i += best_len
        else:
            acc = (acc << 9) | 0x100 | buf[i]
            nbits += 9
            i += 1
        if nbits >= 64:
            whole = nbits >> 3 << 3
            out += (acc >> (nbits - whole)).to_bytes(whole >> 3, "big")
            nbits -= whole
            acc &= (1 << nbits) - 1
    if nbits:
        whole = (nbits + 7) >> 3 << 3
        out += (acc << (whole - nbits)).to_bytes(whole >> 3, "big")  # zero padding
    return bytes(out)


# -- the application tar ---------------------------------------------------------------------

def _entries(app_dir: str) -> List[Tuple[str, str, os.stat_result]]:
    """``(relative posix path, absolute path, lstat)`` of everything under ``app_dir``, sorted."""
    found = []
    for root, dirs, files in os.walk(app_dir):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        for name in dirs + files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, app_dir).replace(os.sep, "/")
            found.append((rel, path, os.lstat(path)))
    found.sort(key=lambda e: e[0])
    return found


def app_tar(app_dir: str) -> bytes:
    """A deterministic POSIX ustar archive of ``app_dir``'s contents.

    Paths are relative to ``app_dir`` (directories end in "/"), sorted; regular
    files and directories only; mtime 0, uid/gid 0, no user or group names; modes
    0644, or 0755 for directories and files with an executable bit.
    ``__pycache__`` directories are left out.  Raises PackError for a symlink, a
    special file, or a path that ustar cannot hold.
    """
    if not os.path.isdir(app_dir):
        raise PackError("not a directory: %s" % app_dir)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for rel, path, st in _entries(app_dir):
            info = tarfile.TarInfo(rel)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if stat.S_ISDIR(st.st_mode):
                info.name = rel + "/"
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                content = None
            elif stat.S_ISREG(st.st_mode):
                info.type = tarfile.REGTYPE
                info.mode = 0o755 if st.st_mode & 0o111 else 0o644
                with open(path, "rb") as f:
                    content = f.read()
                info.size = len(content)
            elif stat.S_ISLNK(st.st_mode):
                raise PackError("%s is a symbolic link: an application bundle holds regular files and "
                                "directories only" % path)
            else:
                raise PackError("%s is a special file: an application bundle holds regular files and "
                                "directories only" % path)
            try:
                tar.addfile(info, io.BytesIO(content) if content is not None else None)
            except ValueError as exc:  # a name too long for ustar, a non-ASCII-encodable name, ...
                raise PackError("cannot pack %s: %s" % (path, exc)) from None
    return out.getvalue()


# -- the OTA file ----------------------------------------------------------------------------

def build_ota_file(payload: bytes, magic: int = MAGIC_PYTHON_APP) -> bytes:
    """Header + LZSS stream of ``payload`` (see the module doc)."""
    body = struct.pack("<I", magic) + VERSION + lzss_encode(payload)
    return struct.pack("<II", len(body), binascii.crc32(body)) + body


def read_ota_file(blob: bytes) -> bytes:
    """Check an OTA file as the device will (length, CRC-32, magic) and return its payload.

    The cloud reads the file with the device's own header reader and streaming
    decoder (otafile.py, lzss.py) rather than a second implementation: a file the
    cloud accepts is then one the device decodes to the same bytes, and so the
    SHA-256 sent as finalSha256 is the one the device computes.  (A second
    decoder here filled the whole ring with spaces where the device, like the C++
    library, leaves the last F cells zero: a stream that reads them decoded to
    other bytes.)  Checking pack's encoder is the round-trip tests' job
    (tests/ota/test_ota_roundtrip.py), against the device's decoder.
    """
    if len(blob) < HEADER_SIZE:
        raise PackError("not an OTA file: %d bytes, shorter than the 20-byte header" % len(blob))
    try:
        _, crc = read_header(blob[:HEADER_SIZE], len(blob))
    except OtaError as exc:
        raise PackError(exc.args[0]) from None
    if binascii.crc32(blob[8:]) != crc:
        raise PackError("OTA file CRC-32 mismatch: header 0x%08x, content 0x%08x" % (crc, binascii.crc32(blob[8:])))
    return bytes(LZSSDecoder().feed(blob[HEADER_SIZE:]))


def pack_file(app_dir: str, out_path: str) -> str:
    """Pack ``app_dir`` into the OTA file ``out_path``; return the payload's SHA-256 (hex).

    The file is written under a temporary name and renamed, so ``out_path`` is
    either the old file or the whole new one.
    """
    payload = app_tar(app_dir)
    blob = build_ota_file(payload)
    tmp = "%s.tmp%d" % (out_path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return hashlib.sha256(payload).hexdigest()
