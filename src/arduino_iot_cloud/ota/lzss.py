# Streaming LZSS decoder for the Arduino OTA file format.
#
# The format (as the Arduino C++ tools write it): EI=11 position bits, EJ=4
# length bits, P=1, a ring buffer of N=2048 bytes whose first N-F bytes start
# as spaces (F=17; the rest zero), writing from position N-F.  Bits are read
# most significant first.  Flag 1: an 8-bit literal.  Flag 0: an 11-bit ring
# position and a 4-bit length; length+2 bytes are copied one at a time, so a
# copy may overlap what it writes.  The stream has no end marker: the bits
# left when the input ends (padding, at most 15) are ignored, as the C++
# decoder does.  Any bytes decode to something, so the decoder never raises;
# truncation and corruption are caught by the file's length, CRC-32 and
# SHA-256 checks.
#
# Memory is the ring buffer plus the output of one feed(): at most 8.5 times
# the input given (17 bytes per 16-bit token).

from ..compat import const

_N = const(2048)
_F = const(17)
_MASK = const(2047)


class LZSSDecoder:
    def __init__(self):
        self.ring = bytearray(b" " * (_N - _F) + bytes(_F))
        self.pos = _N - _F      # next ring position written
        self._bits = 0          # unread bits, right-aligned
        self._nbits = 0
        self.total_out = 0

    def feed(self, data):
        """Decode data (bytes-like) as far as it goes; return the bytes it yields."""
        ring = self.ring
        pos = self.pos
        bits = self._bits
        nbits = self._nbits
        out = bytearray()
        for byte in data:
            bits = (bits << 8) | byte
            nbits += 8
            while nbits >= 9:
                if (bits >> (nbits - 1)) & 1:
                    c = (bits >> (nbits - 9)) & 0xFF
                    nbits -= 9
                    out.append(c)
                    ring[pos] = c
                    pos = (pos + 1) & _MASK
                elif nbits >= 16:
                    token = (bits >> (nbits - 16)) & 0x7FFF
                    nbits -= 16
                    src = token >> 4
                    for _ in range((token & 15) + 2):
                        c = ring[src]
                        out.append(c)
                        ring[pos] = c
                        pos = (pos + 1) & _MASK
                        src = (src + 1) & _MASK
                else:
                    break
            bits &= (1 << nbits) - 1
        self.pos = pos
        self._bits = bits
        self._nbits = nbits
        self.total_out += len(out)
        return out
