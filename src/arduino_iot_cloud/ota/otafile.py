# Reading an OTA file as a stream: header, CRC-32, LZSS, SHA-256, tar.
#
# The file: a 20-byte little-endian header (u32 len, u32 crc32, u32 magic,
# 8 bytes version), then the LZSS-compressed payload.  len counts magic +
# version + payload; crc32 (IEEE, as binascii/zlib) covers the same bytes.
# The payload decompresses to a tar archive, extracted as it arrives (tar.py)
# while its SHA-256 is computed.  OtaReader.feed() takes the file in pieces
# of any size; finish() checks what only the end can tell, in the order a
# corrupted file is best explained: length, CRC-32, archive, SHA-256.  An
# unsafe archive in a file whose CRC is wrong reports the CRC: corruption in
# transit is the likelier story.

import hashlib
import struct
from binascii import crc32

from . import errors
from .errors import OtaError
from .lzss import LZSSDecoder
from .tar import TarExtractor

HEADER_SIZE = 20
MAGIC = 0x50594150


def read_header(h, total=None):
    """Check the 20-byte header `h` (magic, and the length against `total`,
    the whole file's size, when known); return (length, crc32).  The cloud
    checks a file with this too before it sends it (ota/pack.py)."""
    length, crc, magic = struct.unpack("<III", bytes(h[:12]))
    if magic != MAGIC:
        raise OtaError(errors.MAGIC_NUMBER, "magic number 0x%08x is not a Python application bundle's "
                       "(0x%08x)" % (magic, MAGIC))
    if length < 12:
        raise OtaError(errors.HEADER_LENGTH, "header length %d is shorter than the header" % length)
    if total is not None and total != length + 8:
        raise OtaError(errors.HEADER_LENGTH, "the file has %d bytes, its header says %d"
                       % (total, length + 8))
    return length, crc


class OtaReader:
    """Check and extract an OTA file into `dest`.

    total: the whole file's size when known in advance (the server says it):
    a header that disagrees fails at once with HEADER_LENGTH.
    """

    def __init__(self, dest, total=None):
        self.total = total
        self.length = None       # from the header: bytes after the first 8
        self.expected_crc = None
        self.received = 0        # bytes of the file fed so far
        self._head = bytearray()
        self._crc = 0
        self._lzss = LZSSDecoder()
        self._sha = hashlib.sha256()
        self._tar = TarExtractor(dest)
        self._tar_error = None   # held until the CRC has been checked

    def feed(self, data):
        data = memoryview(data)
        self.received += len(data)
        if self.length is None:
            take = HEADER_SIZE - len(self._head)
            self._head.extend(data[:take])
            data = data[take:]
            if len(self._head) < HEADER_SIZE:
                return
            self._header(self._head)
            self._crc = crc32(self._head[8:], self._crc)
        if self.received > self.length + 8:
            raise OtaError(errors.HEADER_LENGTH, "the file is longer than its header says (%d bytes)"
                           % (self.length + 8))
        if not len(data):
            return
        self._crc = crc32(data, self._crc)
        out = self._lzss.feed(data)
        self._sha.update(out)
        if self._tar_error is None:
            try:
                self._tar.feed(out)
            except OtaError as e:
                if e.code != errors.BAD_ARCHIVE:
                    self._tar.close()
                    raise
                self._tar.close()
                self._tar_error = e

    def _header(self, h):
        self.length, self.expected_crc = read_header(h, self.total)

    def finish(self):
        """Check the whole file; return the SHA-256 of the payload (bytes)."""
        if self.length is None or self.received != self.length + 8:
            self._tar.close()
            raise OtaError(errors.HEADER_LENGTH, "the file ended after %d bytes; its header says %s"
                           % (self.received, "nothing" if self.length is None else self.length + 8))
        if self._crc & 0xFFFFFFFF != self.expected_crc:
            self._tar.close()
            raise OtaError(errors.HEADER_CRC, "CRC-32 0x%08x does not match the header's 0x%08x"
                           % (self._crc & 0xFFFFFFFF, self.expected_crc))
        if self._tar_error is not None:
            raise self._tar_error
        self._tar.finish()
        return self._sha.digest()

    def close(self):
        self._tar.close()
