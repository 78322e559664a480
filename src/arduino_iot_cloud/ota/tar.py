# Streaming extractor for the application bundle's tar payload.
#
# The payload is a POSIX (ustar) archive of regular files and directories.
# TarExtractor takes it in pieces of any size and writes each file under
# `dest` as its bytes arrive, so memory stays at one 512-byte header plus the
# piece being written.  It refuses, with OtaError(BAD_ARCHIVE): absolute
# paths, ".." components, links, devices, FIFOs and extension headers (pax,
# GNU long names), bad header checksums, sizes it cannot read, non-zero bytes
# after the end-of-archive block, and an archive that ends early.  A member
# path can therefore never leave `dest`.

import os

from . import errors
from .errors import OtaError

_BLOCK = 512


def _bad(message):
    return OtaError(errors.BAD_ARCHIVE, message)


def _octal(field, what):
    text = bytes(field).rstrip(b"\x00 ").lstrip(b" ")
    if not text:
        return 0
    value = 0
    for ch in text:
        if ch < 48 or ch > 55:
            raise _bad("tar header: %s is not an octal number" % what)
        value = value * 8 + ch - 48
    return value


def _member_path(header):
    name = bytes(header[0:100]).split(b"\x00")[0]
    prefix = bytes(header[345:500]).split(b"\x00")[0] if header[257:262] == b"ustar" else b""
    raw = prefix + b"/" + name if prefix else name
    try:
        path = raw.decode("utf-8")
    except UnicodeError:
        raise _bad("tar member name is not UTF-8")
    if path.startswith("/"):
        raise _bad("tar member %r has an absolute path" % path)
    parts = []
    for part in path.split("/"):
        if part == "..":
            raise _bad("tar member %r goes up a directory ('..')" % path)
        if part and part != ".":
            parts.append(part)
    return path, parts


def makedirs(path):
    """os.makedirs(path, exist_ok=True) on both runtimes."""
    at = ""
    for part in path.split("/"):
        at = at + "/" + part if at or path.startswith("/") else part
        if not part:
            continue
        try:
            os.mkdir(at)
        except OSError as e:
            if not (e.args and e.args[0] == 17):  # EEXIST
                raise


class TarExtractor:
    def __init__(self, dest):
        self.dest = dest
        self._head = bytearray()     # the header being collected
        self._file = None            # the member being written
        self._left = 0               # its bytes still to come
        self._pad = 0                # padding to skip after it
        self._ended = False          # the end-of-archive block was seen

    def _open(self, parts, executable):
        path = self.dest + "/" + "/".join(parts)
        try:
            if len(parts) > 1:
                makedirs(self.dest + "/" + "/".join(parts[:-1]))
            f = open(path, "wb")
            # Keep the executable bit pack.py records (0755), so that packing the
            # installed tree again gives the same SHA-256.  MicroPython has no chmod.
            if executable and hasattr(os, "chmod"):
                os.chmod(path, 0o755)
            return f
        except OSError as e:
            raise errors.storage_error(e, path)

    def feed(self, data):
        data = memoryview(data)
        i = 0
        n = len(data)
        while i < n:
            if self._ended:
                for b in data[i:]:
                    if b:
                        raise _bad("data after the end of the tar archive")
                return
            if self._left:
                take = min(self._left, n - i)
                try:
                    self._file.write(data[i:i + take])
                except OSError as e:
                    raise errors.storage_error(e, "the new application")
                self._left -= take
                i += take
                if not self._left:
                    self._close_file()
                continue
            if self._pad:
                take = min(self._pad, n - i)
                self._pad -= take
                i += take
                continue
            take = min(_BLOCK - len(self._head), n - i)
            self._head.extend(data[i:i + take])
            i += take
            if len(self._head) == _BLOCK:
                self._header(self._head)
                self._head = bytearray()

    def _close_file(self):
        if self._file is not None:
            f = self._file
            self._file = None
            try:
                f.close()
            except OSError as e:
                raise errors.storage_error(e, "the new application")

    def _header(self, h):
        if not any(h):
            self._ended = True
            return
        stored = _octal(h[148:156], "checksum")
        total = sum(h[:148]) + 8 * 32 + sum(h[156:])
        if stored != total:
            raise _bad("tar header checksum mismatch")
        if h[124] & 0x80:
            raise _bad("tar member size in base-256 form (too large)")
        size = _octal(h[124:136], "size")
        kind = h[156]
        path, parts = _member_path(h)
        if kind in (48, 0):  # '0' or NUL: a regular file
            if not parts:
                raise _bad("tar member %r has no file name" % path)
            self._file = self._open(parts, _octal(h[100:108], "mode") & 0o111)
            self._left = size
            self._pad = -size % _BLOCK
            if not size:
                self._close_file()
        elif kind == 53:  # '5': a directory
            if parts:
                try:
                    makedirs(self.dest + "/" + "/".join(parts))
                except OSError as e:
                    raise errors.storage_error(e, path)
            self._pad = (size + _BLOCK - 1) // _BLOCK * _BLOCK
        elif kind in (49, 50):
            raise _bad("tar member %r is a link" % path)
        elif kind in (51, 52, 54):
            raise _bad("tar member %r is a device or FIFO" % path)
        else:
            raise _bad("tar member %r has unsupported type %r" % (path, chr(kind)))

    def close(self):
        """Close the member being written, if any (after an error)."""
        f, self._file = self._file, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass

    def finish(self):
        """Raise OtaError unless the archive ended properly."""
        if not self._ended or self._left or self._head:
            self.close()
            raise _bad("the tar archive ends early")
