"""The two halves of OTA against each other: the cloud's packer (ota/pack.py) and
the device's streaming reader (ota/lzss.py, otafile.py, install.py), on random
and real data, fed in pieces of random sizes as a network delivers them."""

import hashlib
import os
import shutil
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from arduino_iot_cloud.ota import app_dir, install_file, pack, slots
from arduino_iot_cloud.ota.lzss import LZSSDecoder
from arduino_iot_cloud.ota.otafile import OtaReader

ROOT_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SRC = os.path.join(ROOT_DIR, "src")
EXAMPLE_APP = os.path.join(ROOT_DIR, "examples", "ota_app")


def decode_in_pieces(stream, cuts):
    """Feed `stream` to a fresh device decoder, cut at the (sorted, deduplicated) offsets."""
    dec = LZSSDecoder()
    out = bytearray()
    start = 0
    for cut in sorted(set(c % (len(stream) + 1) for c in cuts)) + [len(stream)]:
        out += dec.feed(stream[start:cut])
        start = max(start, cut)
    return bytes(out)


# Data with repeats (what LZSS finds) as well as noise: runs from a small
# alphabet, copies of earlier pieces at every distance, and spaces (the ring's
# initial contents, which the encoder may match before any data was written).
repetitive = st.lists(st.one_of(st.binary(max_size=40), st.sampled_from([b" " * 20, b"ab" * 9, b"\x00" * 33])),
                      max_size=60).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=3000), repetitive), st.lists(st.integers(min_value=0, max_value=10 ** 6),
                                                                 max_size=12))
def test_device_decoder_reads_the_cloud_encoder(data, cuts):
    stream = pack.lzss_encode(data)
    assert decode_in_pieces(stream, cuts) == data


@settings(max_examples=20, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(min_value=1, max_value=5000))
def test_far_matches_across_the_ring(rng, gap):
    # a block repeated `gap` bytes later: near, at and beyond the ring's 2047-byte reach
    block = bytes(rng.getrandbits(8) for _ in range(64))
    data = block + bytes(rng.getrandbits(8) for _ in range(gap)) + block
    stream = pack.lzss_encode(data)
    assert decode_in_pieces(stream, [rng.randrange(len(stream) + 1) for _ in range(5)]) == data


def test_real_sources_in_pieces_of_random_sizes():
    import random

    rng = random.Random(13)
    payload = pack.app_tar(os.path.join(SRC, "arduino_iot_cloud"))
    stream = pack.lzss_encode(payload)
    cuts, at = [], 0
    while at < len(stream):
        at += rng.choice((1, 2, 3, 7, 64, 511, 1500, 4096))
        cuts.append(at)
    assert decode_in_pieces(stream, cuts) == payload


def test_whole_file_through_the_device_reader(tmp_path):
    # pack's file, read as a download delivers it: header split, odd piece sizes
    app = tmp_path / "app"
    (app / "pkg").mkdir(parents=True)
    (app / "main.py").write_bytes(b"VERSION = 7\n" * 50)
    (app / "pkg" / "tool.py").write_bytes(bytes(range(256)) * 9)
    (app / "empty").mkdir()
    blob = pack.build_ota_file(pack.app_tar(str(app)))
    reader = OtaReader(str(tmp_path / "out"), total=len(blob))
    os.mkdir(str(tmp_path / "out"))
    for i in range(0, len(blob), 13):
        reader.feed(blob[i:i + 13])
    assert reader.finish() == hashlib.sha256(pack.app_tar(str(app))).digest()
    assert tree(str(tmp_path / "out")) == tree(str(app))


def tree(top):
    """{relative path: file bytes, or None for a directory} of everything under top."""
    found = {}
    for root, dirs, files in os.walk(top):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), top)] = None
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                found[os.path.relpath(os.path.join(root, name), top)] = f.read()
    return found


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, "-m", "arduino_iot_cloud.ota"] + list(args), capture_output=True,
                          text=True, timeout=120, env=env)


def test_pack_then_install_a_real_app_directory(tmp_path):
    # The example application plus a copy of the library's own sources (a real tree:
    # packages, an executable file, __pycache__ directories that must stay out).
    app = tmp_path / "app"
    shutil.copytree(EXAMPLE_APP, str(app))
    shutil.copytree(os.path.join(SRC, "arduino_iot_cloud"), str(app / "lib"))
    (app / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(str(app / "run.sh"), 0o755)
    (app / "lib" / "__pycache__").mkdir(exist_ok=True)
    (app / "lib" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"stale")
    ota = tmp_path / "app.ota"
    out = run_cli("pack", str(app), "-o", str(ota))
    assert out.returncode == 0, out.stderr
    root = tmp_path / "root"
    out = run_cli("install", str(root), str(ota))
    assert out.returncode == 0, out.stderr
    sha = hashlib.sha256(pack.app_tar(str(app))).hexdigest()
    assert "sha256 %s" % sha in out.stdout
    assert slots.active_sha(str(root)).hex() == sha

    installed = app_dir(str(root))
    expected = {k: v for k, v in tree(str(app)).items() if "__pycache__" not in k}
    assert tree(installed) == expected
    # Running the application makes CPython write __pycache__ beside it: the SHA-256
    # recomputed from the installed tree (pack's rule) is still the one reported.
    subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, %r); import lib.ota.pack" % installed],
                   check=True, timeout=60, capture_output=True,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
    assert any("__pycache__" in k for k in tree(installed))
    assert hashlib.sha256(pack.app_tar(installed)).hexdigest() == sha


def test_install_file_agrees_with_pack_file(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(EXAMPLE_APP, str(app))
    sha = pack.pack_file(str(app), str(tmp_path / "a.ota"))
    assert install_file(str(tmp_path / "root"), str(tmp_path / "a.ota")).hex() == sha


def test_pack_command_refuses_bad_input_clearly(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("VERSION = 1\n")
    os.symlink("main.py", str(app / "link.py"))
    out = run_cli("pack", str(app), "-o", str(tmp_path / "a.ota"))
    assert out.returncode == 2 and "symbolic link" in out.stderr and "Traceback" not in out.stderr, out.stderr
    out = run_cli("pack", str(tmp_path / "missing"), "-o", str(tmp_path / "a.ota"))
    assert out.returncode == 2 and "not a directory" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "a.ota").exists()
    os.unlink(str(app / "link.py"))
    out = run_cli("pack", str(app), "-o", str(tmp_path / "a.ota"))
    assert out.returncode == 0 and pack.pack_file(str(app), str(tmp_path / "b.ota")) in out.stdout, out.stdout


def test_the_cloud_computes_finalsha256_as_the_device_does():
    # A stream (not one pack makes) that copies from ring cells 2040-2041 before any data
    # reached them: zeros for the device (and the C++ library), so for the cloud's check too.
    import binascii
    import struct

    stream = bytes([0b01111111, 0b10000000])  # flag 0, position 2040, length code 0: copy 2
    body = struct.pack("<I", 0x50594150) + pack.VERSION + stream
    blob = struct.pack("<II", len(body), binascii.crc32(body)) + body
    assert pack.read_ota_file(blob) == bytes(LZSSDecoder().feed(stream)) == b"\x00\x00"
