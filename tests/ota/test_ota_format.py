"""The OTA file on the device: LZSS decoding (hand-worked vectors from the format's
facts), the tar extractor's refusals, the header/CRC/length checks, install_file,
and the slots with their pointer file (trial, rollback, power cut)."""

import hashlib
import io
import os
import tarfile

import pytest

from arduino_iot_cloud.ota import app_dir, install_file, slots
from arduino_iot_cloud.ota import errors as codes
from arduino_iot_cloud.ota.errors import OtaError
from arduino_iot_cloud.ota.lzss import LZSSDecoder
from arduino_iot_cloud.ota.otafile import OtaReader
from arduino_iot_cloud.ota.tar import TarExtractor
from otatools import app_files, bits_to_bytes, bundle, literal_lzss, make_tar, ota_file


def decode(stream, piece=None):
    d = LZSSDecoder()
    if piece is None:
        return bytes(d.feed(stream))
    return b"".join(bytes(d.feed(stream[i:i + piece])) for i in range(0, len(stream), piece))


# --- LZSS ------------------------------------------------------------------------------------

def test_literal_stream_decodes_to_its_bytes_in_any_pieces():
    data = bytes(range(256)) * 20
    stream = literal_lzss(data)
    assert decode(stream) == data
    for piece in (1, 3, 7, 512):
        assert decode(stream, piece) == data


def test_back_reference_copies_overlapping_bytes():
    # literal 'a' lands at N-F = 2031; then position 2031 (0b11111101111), length code 3:
    # 3 + 2 = 5 bytes copied one at a time, each from the byte just written.
    stream = bits_to_bytes("1 01100001  0 11111101111 0011")
    assert stream == b"\xb0\xbf\x79\x80"
    assert decode(stream) == b"aaaaaa"


def test_the_ring_starts_with_spaces_then_zeros():
    # Position 0, length code 0: two of the N-F spaces the ring starts with.
    assert decode(bits_to_bytes("0 00000000000 0000")) == b"  "
    # Position 2040 (in the last F bytes, never written yet): zeros, as the C++ decoder's
    # static buffer holds.
    assert decode(bits_to_bytes("0 11111111000 0000")) == b"\x00\x00"
    # The longest copy: code 15 -> 17 bytes.
    assert decode(bits_to_bytes("0 00000000100 1111")) == b" " * 17


def test_positions_wrap_around_the_ring():
    # 3000 literals from position 2031: byte k sits at (2031 + k) & 2047, so position
    # 2041 first held byte 10, then byte 2058 overwrote it.
    data = bytes((k * 7 + k // 256) & 0xFF for k in range(3000))
    bits = "".join("1" + format(b, "08b") for b in data)
    bits += "0" + format(2041, "011b") + "0000"
    out = decode(bits_to_bytes(bits))
    assert out[:3000] == data
    assert out[3000:] == data[2058:2060]


def test_padding_and_a_cut_token_are_ignored():
    # 7 zero bits after 'a': a flag 0 without its 15 bits; the decoder stops there.
    assert decode(bits_to_bytes("1 01100001")) == b"a"
    # A reference cut after 8 of its 16 bits, fed in two pieces, then completed.
    d = LZSSDecoder()
    stream = bits_to_bytes("0 00000000000 0001")
    assert bytes(d.feed(stream[:1])) == b""
    assert bytes(d.feed(stream[1:])) == b"   "


# --- tar ---------------------------------------------------------------------------------------

def extract(tmp_path, data, piece=None):
    dest = tmp_path / "out"
    dest.mkdir()
    t = TarExtractor(str(dest))
    piece = piece or len(data)
    for i in range(0, len(data), piece):
        t.feed(data[i:i + piece])
    t.finish()
    return dest


def test_tar_extracts_files_and_directories(tmp_path):
    files = {"main.py": b"print(1)\n", "pkg": None, "pkg/sub": None, "pkg/sub/x.bin": bytes(range(256)) * 9,
             "empty.txt": b""}
    dest = extract(tmp_path, make_tar(files), piece=100)
    assert (dest / "main.py").read_bytes() == b"print(1)\n"
    assert (dest / "pkg/sub/x.bin").read_bytes() == bytes(range(256)) * 9
    assert (dest / "empty.txt").read_bytes() == b""


def test_tar_long_names_use_the_ustar_prefix(tmp_path):
    name = "d" * 90 + "/" + "e" * 60 + "/f.py"
    dest = extract(tmp_path, make_tar({name: b"x"}))
    assert (dest / name).read_bytes() == b"x"


def _member(name, kind, linkname="", size=0):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = size
    return info


@pytest.mark.parametrize("info, words", [
    (_member("/etc/passwd", tarfile.REGTYPE, size=1), "absolute path"),
    (_member("../evil.py", tarfile.REGTYPE, size=1), "'..'"),
    (_member("lib/../../evil.py", tarfile.REGTYPE, size=1), "'..'"),
    (_member("link", tarfile.SYMTYPE, "/etc/passwd"), "link"),
    (_member("hard", tarfile.LNKTYPE, "main.py"), "link"),
    (_member("dev", tarfile.CHRTYPE), "device"),
    (_member("blk", tarfile.BLKTYPE), "device"),
    (_member("fifo", tarfile.FIFOTYPE), "FIFO"),
])
def test_tar_refuses_what_could_leave_the_slot(tmp_path, info, words):
    data = make_tar({"main.py": b"ok"}, extra=[(info, b"x" if info.size else None)])
    with pytest.raises(OtaError) as e:
        extract(tmp_path, data)
    assert e.value.code == codes.BAD_ARCHIVE
    assert words in str(e.value)
    assert not (tmp_path / "evil.py").exists()


def test_tar_refuses_pax_headers_bad_checksums_and_short_archives(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("x" * 120)
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(OtaError, match="unsupported type"):
        extract(tmp_path, buf.getvalue())
    good = bytearray(make_tar({"a.py": b"1"}))
    bad = bytearray(good)
    bad[0] ^= 1
    (tmp_path / "1").mkdir()
    with pytest.raises(OtaError, match="checksum"):
        extract(tmp_path / "1", bytes(bad))
    (tmp_path / "2").mkdir()
    with pytest.raises(OtaError, match="ends early"):
        extract(tmp_path / "2", bytes(good[:700]))
    (tmp_path / "3").mkdir()
    with pytest.raises(OtaError, match="after the end"):
        extract(tmp_path / "3", bytes(good) + b"junk")


# --- the file: header, length, CRC, SHA-256 -----------------------------------------------------

def read(tmp_path, data, total=None):
    dest = tmp_path / "slot"
    dest.mkdir(exist_ok=True)
    r = OtaReader(str(dest), total)
    for i in range(0, len(data), 1000):
        r.feed(data[i:i + 1000])
    return r.finish()


def test_a_good_file_gives_the_payload_sha256(tmp_path):
    files = app_files(1)
    data, sha = bundle(files)
    assert read(tmp_path, data, total=len(data)) == sha == hashlib.sha256(make_tar(files)).digest()
    assert (tmp_path / "slot/main.py").read_bytes() == files["main.py"]


@pytest.mark.parametrize("kw, code", [
    ({"magic": 0x23418054}, codes.MAGIC_NUMBER),
    ({"crc_delta": 1}, codes.HEADER_CRC),
    ({"length_delta": 5}, codes.HEADER_LENGTH),
    ({"length_delta": -5}, codes.HEADER_LENGTH),
])
def test_bad_headers_are_refused_with_the_cpp_codes(tmp_path, kw, code):
    data, _ = bundle(app_files(1), **kw)
    with pytest.raises(OtaError) as e:
        read(tmp_path, data)
    assert e.value.code == code


def test_a_length_the_server_contradicts_fails_at_the_header(tmp_path):
    data, _ = bundle(app_files(1))
    r = OtaReader(str(tmp_path), total=len(data) + 1)
    with pytest.raises(OtaError) as e:
        r.feed(data[:20])
    assert e.value.code == codes.HEADER_LENGTH


def test_a_corrupted_payload_reports_the_crc_not_the_archive(tmp_path):
    data = bytearray(bundle(app_files(1))[0])
    data[30] ^= 0xFF  # inside the first tar header: checksum fails while extracting
    with pytest.raises(OtaError) as e:
        read(tmp_path, bytes(data))
    assert e.value.code == codes.HEADER_CRC


def test_an_unsafe_archive_in_a_sound_file_is_refused(tmp_path):
    payload = make_tar({"main.py": b"x"}, extra=[(_member("../up.py", tarfile.REGTYPE, size=1), b"x")])
    with pytest.raises(OtaError) as e:
        read(tmp_path, ota_file(literal_lzss(payload)))
    assert e.value.code == codes.BAD_ARCHIVE
    assert not (tmp_path / "up.py").exists()


# --- install_file, slots, trial and rollback ------------------------------------------------------

def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_install_file_makes_the_application_active(tmp_path):
    root = str(tmp_path / "root")
    assert app_dir(root) is None
    assert slots.active_sha(root) == bytes(32)
    data, sha = bundle(app_files(1))
    assert install_file(root, write(tmp_path, "v1.ota", data)) == sha
    path = app_dir(root)
    assert open(os.path.join(path, "main.py"), "rb").read() == b"VERSION = 1\n"
    assert slots.active_sha(root) == sha
    assert slots.read_state(root)["trial"] == 0
    data2, sha2 = bundle(app_files(2))
    install_file(root, write(tmp_path, "v2.ota", data2))
    assert app_dir(root) != path
    assert slots.read_state(root)["prev_sha"] == slots.hexstr(sha)


def test_a_refused_file_leaves_the_active_application_untouched(tmp_path):
    root = str(tmp_path / "root")
    data, sha = bundle(app_files(1))
    install_file(root, write(tmp_path, "v1.ota", data))
    before = open(root + "/state").read()
    bad, _ = bundle(app_files(2), crc_delta=3)
    with pytest.raises(OtaError) as e:
        install_file(root, write(tmp_path, "bad.ota", bad))
    assert e.value.code == codes.HEADER_CRC
    assert open(root + "/state").read() == before
    assert open(app_dir(root) + "/main.py").read() == "VERSION = 1\n"
    assert not os.path.exists(root + "/b"), "the half-written slot is removed"


def test_a_power_cut_during_install_leaves_the_old_version(tmp_path):
    # Everything up to the rename writes the inactive slot and state.new only.
    root = str(tmp_path / "root")
    install_file(root, write(tmp_path, "v1.ota", bundle(app_files(1))[0]))
    before = open(root + "/state").read()
    from arduino_iot_cloud.ota.install import Installer

    data, sha = bundle(app_files(2))
    inst = Installer(root, sha)
    inst.feed(data[:len(data) // 2])  # ... and the power goes
    with open(root + "/state.new", "w") as f:
        f.write("active=b\nsha=")  # a pointer cut mid-write
    assert open(root + "/state").read() == before
    assert open(app_dir(root) + "/main.py").read() == "VERSION = 1\n"


def test_trial_rolls_back_after_too_many_starts(tmp_path, monkeypatch):
    root = str(tmp_path / "root")
    install_file(root, write(tmp_path, "v1.ota", bundle(app_files(1))[0]))
    old_sha = slots.active_sha(root)
    from arduino_iot_cloud.ota.install import Installer

    data, sha = bundle(app_files(2))
    inst = Installer(root, sha)
    inst.feed(data)
    inst.activate(inst.verify(), b"\x01" * 16, trial=True, max_boots=2)
    starts = []
    for _ in range(3):
        monkeypatch.setattr(slots, "_counted", [])  # a new process
        starts.append(open(app_dir(root) + "/main.py").read())
    assert starts == ["VERSION = 2\n", "VERSION = 2\n", "VERSION = 1\n"]
    assert slots.active_sha(root) == old_sha
    assert slots.take_failure(root) == (codes.ROLLED_BACK, b"\x01" * 16)
    assert slots.take_failure(root) is None


def test_an_attach_ends_the_trial(tmp_path, monkeypatch):
    root = str(tmp_path / "root")
    install_file(root, write(tmp_path, "v1.ota", bundle(app_files(1))[0]))
    from arduino_iot_cloud.ota.install import Installer

    data, sha = bundle(app_files(2))
    inst = Installer(root, sha)
    inst.feed(data)
    inst.activate(inst.verify(), b"\x02" * 16, trial=True, max_boots=1)
    monkeypatch.setattr(slots, "_counted", [])
    app_dir(root)
    assert slots.confirm(root) is True
    for _ in range(3):
        monkeypatch.setattr(slots, "_counted", [])
        assert open(app_dir(root) + "/main.py").read() == "VERSION = 2\n"


def test_the_install_command(tmp_path):
    import subprocess
    import sys

    root = str(tmp_path / "root")
    data, sha = bundle(app_files(1))
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "..", "src"))
    ok = subprocess.run([sys.executable, "-m", "arduino_iot_cloud.ota", "install", root, write(tmp_path, "a.ota", data)],
                        env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and sha.hex() in ok.stdout, ok.stderr
    assert slots.active_sha(root) == sha
    bad, _ = bundle(app_files(2), magic=1)
    refused = subprocess.run([sys.executable, "-m", "arduino_iot_cloud.ota", "install", root,
                              write(tmp_path, "b.ota", bad)], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "MagicNumber (-7)" in refused.stderr
    assert slots.active_sha(root) == sha
