"""The packer (arduino_iot_cloud.ota.pack): LZSS encoder, deterministic tar, OTA file header.

The LZSS stream is checked three ways: exact bytes for small inputs worked out by hand
from the format (EI=11, EJ=4, P=1, N=2048, F=17, ring of spaces, writes from N-F,
MSB first); a reference decoder written here, bit by bit after the C++ library's
state machine, for round trips on random and real data; and the packer's own decoder.
"""

import binascii
import hashlib
import io
import os
import random
import stat
import struct
import tarfile

import pytest

from arduino_iot_cloud.ota import pack
from arduino_iot_cloud.ota.lzss import LZSSDecoder

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src", "arduino_iot_cloud")
UNWRITTEN = None  # ring cells N-F..N-1 before the data fills them: reading one is an encoder bug


def device_decode(stream):
    return bytes(LZSSDecoder().feed(stream))


def reference_decode(stream):
    """Decode bit by bit: flag 1 -> 8-bit literal; flag 0 -> 11-bit position, 4-bit length, copy length+2.

    Stops, as the C++ decoder does, when the bits needed for the next field are not there.
    Raises if a copy reads a ring cell that nothing has written yet.
    """
    bits = []
    for byte in stream:
        bits.extend((byte >> (7 - k)) & 1 for k in range(8))
    pos = 0

    def field(n):
        nonlocal pos
        if pos + n > len(bits):
            return None
        value = 0
        for b in bits[pos:pos + n]:
            value = value * 2 + b
        pos += n
        return value

    ring = [0x20] * (2048 - 17) + [UNWRITTEN] * 17
    r = 2048 - 17
    out = []
    while True:
        flag = field(1)
        if flag is None:
            break
        if flag == 1:
            c = field(8)
            if c is None:
                break
            out.append(c)
            ring[r] = c
            r = (r + 1) % 2048
        else:
            i = field(11)
            if i is None:
                break
            j = field(4)
            if j is None:
                break
            for k in range(j + 2):
                c = ring[(i + k) % 2048]
                assert c is not UNWRITTEN, "copy reads ring cell %d before anything was written there" % ((i + k) % 2048)
                out.append(c)
                ring[r] = c
                r = (r + 1) % 2048
    return bytes(out)


def bits_to_bytes(bits):
    """'1 01000001 ...' (spaces ignored) -> bytes, zero-padded to a whole byte."""
    bits = bits.replace(" ", "")
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[k:k + 8], 2) for k in range(0, len(bits), 8))


# -- hand vectors ------------------------------------------------------------------------------

# Each: data, the token bits worked out by hand, why.
HAND_VECTORS = [
    (b"", "", "nothing in, nothing out"),
    (b"A", "1 01000001", "one literal, 7 zero bits of padding"),
    (b"AB", "1 01000001 1 01000010", "two literals; no match of 2 bytes exists before"),
    # the ring already holds spaces at 0..2030; the data's first byte lands at 2031.  The nearest
    # "  " starts at 2030 and overlaps the byte being written (the decoder copies byte by byte).
    (b"  ", "0 11111101110 0000", "a 2-byte match out of the space-filled ring"),
    # 'a' at 2031, then 4 more copied from 2031 onward (a run: each read sees the byte just written)
    (b"aaaaa", "1 01100001 0 11111101111 0010", "a literal and an overlapping match of 4"),
    # 17 spaces: the longest match (length field 15), from 2030 on, overlapping what it writes
    (b" " * 17, "0 11111101110 1111", "the longest match, 17 bytes"),
    # 18 spaces: the same 17, then 1 byte left: a literal (a 1-byte match is not worth a token, P = 1)
    (b" " * 18, "0 11111101110 1111 1 00100000", "17 + a literal: matches shorter than 2 are literals"),
]


@pytest.mark.parametrize("data,bits,why", HAND_VECTORS, ids=[v[2] for v in HAND_VECTORS])
def test_hand_vectors(data, bits, why):
    stream = bits_to_bytes(bits)
    assert reference_decode(stream) == data  # the hand-made stream says what we think it says
    assert pack.lzss_encode(data) == stream
    assert device_decode(stream) == data


def test_same_stream_as_the_cpp_tools_encoder():
    # 256 big-endian 32-bit counters (0, 1, 2, ...): the Arduino C++ tools' encoder turns this
    # into 797 bytes with this SHA-256 (compared once, byte for byte; ours is a different,
    # greedy search that happens to choose the same tokens here)
    data = b"".join(struct.pack(">I", i) for i in range(256))
    stream = pack.lzss_encode(data)
    assert len(stream) == 797
    assert hashlib.sha256(stream).hexdigest() == "ced5d7851249ca8034270364b93ffab9eab9e79b6a335ae31d763ebdf9302936"
    assert reference_decode(stream) == data


def test_stream_ends_on_a_byte_with_zero_padding():
    # 8 literals are exactly 72 bits: no padding byte may follow
    assert len(pack.lzss_encode(b"ABCDEFGH")) == 9
    # whatever the padding length (0..7 bits), the decoders find no extra token in it
    for n in range(1, 40):
        data = bytes(range(65, 65 + n))
        stream = pack.lzss_encode(data)
        assert len(stream) == (9 * n + 7) // 8
        assert reference_decode(stream) == data
        last_bits = (9 * n) % 8
        if last_bits:
            assert stream[-1] & ((1 << (8 - last_bits)) - 1) == 0


def test_window_limit_far_repeats_are_not_referenced():
    # the same 16 bytes again after 2047 bytes of noise is still in reach; after 2048 it is not
    rng = random.Random(7)
    block = bytes(rng.getrandbits(8) for _ in range(16))
    for gap in (2047 - 16, 2048 - 16, 3000):
        noise = bytes(rng.getrandbits(8) for _ in range(gap))
        data = block + noise + block
        stream = pack.lzss_encode(data)
        assert reference_decode(stream) == data


# -- round trips -------------------------------------------------------------------------------

def test_round_trip_random():
    rng = random.Random(2026)
    for size in (1, 2, 3, 16, 17, 18, 100, 2047, 2048, 2049, 5000, 70000):
        for alphabet in (b"ab", b" a", bytes(range(256)), b"\x00"):
            data = bytes(rng.choice(alphabet) for _ in range(size))
            stream = pack.lzss_encode(data)
            assert reference_decode(stream) == data, (size, alphabet[:4])
            assert device_decode(stream) == data


def test_round_trip_real_sources_compress_well():
    data = pack.app_tar(SRC)
    stream = pack.lzss_encode(data)
    assert reference_decode(stream) == data
    assert device_decode(stream) == data
    ratio = len(stream) / len(data)
    assert ratio < 0.5, ratio  # Python sources (and tar headers): well under half


# -- the tar -----------------------------------------------------------------------------------

def make_app(root):
    os.makedirs(os.path.join(root, "lib", "sub"))
    os.makedirs(os.path.join(root, "lib", "__pycache__"))
    os.makedirs(os.path.join(root, "empty"))
    files = {"main.py": b"print('v1')\n", "lib/util.py": b"X = 1\n" * 50, "lib/sub/data.bin": bytes(range(256)),
             "run.sh": b"#!/bin/sh\n", "lib/__pycache__/util.cpython-311.pyc": b"junk"}
    for rel, content in files.items():
        with open(os.path.join(root, rel), "wb") as f:
            f.write(content)
    os.chmod(os.path.join(root, "run.sh"), 0o700)
    os.chmod(os.path.join(root, "main.py"), 0o600)
    return files


def test_tar_is_deterministic_and_normalised(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_app(str(a))
    files = make_app(str(b))
    os.utime(b / "main.py", (1, 1))
    os.chmod(b / "lib" / "util.py", 0o664)
    tar_a, tar_b = pack.app_tar(str(a)), pack.app_tar(str(b))
    assert tar_a == tar_b
    with tarfile.open(fileobj=io.BytesIO(tar_a)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["empty", "lib", "lib/sub", "lib/sub/data.bin", "lib/util.py",
                                             "main.py", "run.sh"]
        for m in members:
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
            assert m.isdir() or m.isfile()
            expected = 0o755 if m.isdir() or m.name == "run.sh" else 0o644
            assert m.mode == expected, (m.name, oct(m.mode))
            if m.isfile():
                assert tar.extractfile(m).read() == files[m.name]
    # plain ustar: the magic, and directory names end in "/" in the header itself
    assert tar_a[257:263] == b"ustar\x00"
    assert tar_a[:6] == b"empty/"


def test_tar_changes_with_content(tmp_path):
    make_app(str(tmp_path))
    before = pack.app_tar(str(tmp_path))
    (tmp_path / "main.py").write_bytes(b"print('v2')\n")
    assert pack.app_tar(str(tmp_path)) != before


def test_tar_refuses_links_and_special_files(tmp_path):
    make_app(str(tmp_path))
    os.symlink("main.py", tmp_path / "link.py")
    with pytest.raises(pack.PackError, match="symbolic link"):
        pack.app_tar(str(tmp_path))
    os.unlink(tmp_path / "link.py")
    os.symlink("lib", tmp_path / "linkdir")
    with pytest.raises(pack.PackError, match="symbolic link"):
        pack.app_tar(str(tmp_path))
    os.unlink(tmp_path / "linkdir")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(pack.PackError, match="special file"):
        pack.app_tar(str(tmp_path))
    os.unlink(tmp_path / "fifo")
    pack.app_tar(str(tmp_path))
    with pytest.raises(pack.PackError, match="not a directory"):
        pack.app_tar(str(tmp_path / "main.py"))


def test_tar_long_names(tmp_path):
    deep = tmp_path / ("d" * 90) / ("e" * 90)
    deep.mkdir(parents=True)
    (deep / "f.py").write_bytes(b"x")
    with tarfile.open(fileobj=io.BytesIO(pack.app_tar(str(tmp_path)))) as tar:
        assert tar.getnames()[-1] == "%s/%s/f.py" % ("d" * 90, "e" * 90)  # ustar prefix field
    (deep / ("f" * 120)).write_bytes(b"x")
    with pytest.raises(pack.PackError, match="cannot pack"):
        pack.app_tar(str(tmp_path))


# -- the OTA file ------------------------------------------------------------------------------

def test_ota_header_layout():
    payload = b"hello hello hello"
    blob = pack.build_ota_file(payload)
    length, crc, magic = struct.unpack_from("<III", blob)
    assert blob[8:12] == b"PAYP"  # 0x50594150 little endian
    assert magic == 0x50594150
    assert blob[12:20] == b"\x00\x00\x00\x00\x00\x00\x00\x40"
    assert length == len(blob) - 8 == 12 + len(pack.lzss_encode(payload))
    assert crc == binascii.crc32(blob[8:])
    assert reference_decode(blob[20:]) == payload
    assert pack.read_ota_file(blob) == payload


def test_read_ota_file_refuses_damage():
    blob = pack.build_ota_file(b"x" * 100)
    with pytest.raises(pack.PackError, match="shorter than the 20-byte header"):
        pack.read_ota_file(blob[:19])
    with pytest.raises(pack.PackError, match="header says"):
        pack.read_ota_file(blob[:-1])
    bad = bytearray(blob)
    bad[-1] ^= 1
    with pytest.raises(pack.PackError, match="CRC-32"):
        pack.read_ota_file(bytes(bad))
    other = pack.build_ota_file(b"x", magic=0x23418054)
    with pytest.raises(pack.PackError, match="magic number 0x23418054"):
        pack.read_ota_file(other)


def test_pack_file(tmp_path):
    app = tmp_path / "app"
    make_app(str(app))
    out = tmp_path / "app.ota"
    sha = pack.pack_file(str(app), str(out))
    payload = pack.read_ota_file(out.read_bytes())
    assert sha == hashlib.sha256(payload).hexdigest() == hashlib.sha256(pack.app_tar(str(app))).hexdigest()
    assert pack.pack_file(str(app), str(out)) == sha
    assert [p.name for p in tmp_path.iterdir()] and not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    assert stat.S_ISREG(os.stat(out).st_mode)


def test_benchmark_script_runs():
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "ota_pack.py")
    out = subprocess.run([sys.executable, script, "--quick"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith(("sources", "random"))]
    assert len(rows) == 3 and all(float(r.split()[-3]) > 0 for r in rows), out.stdout
