# OTA pieces that run on the device, under pytest and under MicroPython
# (tests/mpy_run.py): the command encodings (hand-checked bytes), the LZSS
# decoder (hand-worked vectors), the tar extractor and OTA file reader on a
# hand-built ustar archive, the slots in a temporary directory, the URL rules,
# and the session's hook.

import hashlib
import os
import struct
from binascii import crc32

from arduino_iot_cloud import commands
from arduino_iot_cloud.compat import CBORTag, cbor_dumps
from arduino_iot_cloud.errors import DecodeError, LocalError
from arduino_iot_cloud.ota import app_dir, install_file, slots
from arduino_iot_cloud.ota import errors as codes
from arduino_iot_cloud.ota.download import parse_url
from arduino_iot_cloud.ota.errors import OtaError
from arduino_iot_cloud.ota.lzss import LZSSDecoder
from arduino_iot_cloud.ota.tar import TarExtractor, makedirs
from arduino_iot_cloud.session import DeviceSession
from arduino_iot_cloud.records import Registry
from util import Link, raises, tohex, unhex

DEV = "d3f0b2c8-0000-4000-8000-000000000001"
ID = bytes(range(16))

try:
    _TMP = os.environ.get("TMPDIR") or "/tmp"
except AttributeError:  # MicroPython: no os.environ
    _TMP = "/tmp"


def _tmpdir(name):
    path = "%s/ota-core-%s-%d" % (_TMP, name, os.getpid() if hasattr(os, "getpid") else 0)
    slots.remove_tree(path)
    makedirs(path)
    return path


# --- commands ----------------------------------------------------------------------------------

def test_ota_begin_up_bytes():
    sha = bytes(range(32))
    assert tohex(commands.ota_begin_up(sha)) == "da00010000" + "81" + "5820" + tohex(sha)
    raises(LocalError, commands.ota_begin_up, bytes(31))


def test_ota_progress_up_sends_the_state_as_a_simple_value():
    got = commands.ota_progress_up(ID, commands.OTA_FAIL, -7, 1700000000000001)
    # tag 0x010200, array(4): bstr(16) id, simple(8) = 0xe8, -7 = 0x26, uint64 time
    assert tohex(got) == "da00010200" + "84" + "50" + tohex(ID) + "e8" + "26" + "1b00060a24181e4001"
    fetch = commands.ota_progress_up(ID, commands.OTA_FETCH, 70000, 1)
    assert tohex(fetch)[-14:] == "e51a0001117001"
    raises(LocalError, commands.ota_progress_up, ID, 10, 0, 1)
    raises(LocalError, commands.ota_progress_up, bytes(15), 1, 0, 1)


def test_ota_update_cmd_down_is_decoded_strictly():
    url = "https://127.0.0.1:8443/app.ota"
    fields = [ID, url, bytes(32), b"\x01" * 32]
    tag, got = commands.decode_down(cbor_dumps(CBORTag(commands.OTA_UPDATE_DOWN, fields)))
    assert tag == commands.OTA_UPDATE_DOWN and got == (ID, url, bytes(32), b"\x01" * 32)
    for bad in ([ID, url, bytes(31), bytes(32)], [ID[:15], url, bytes(32), bytes(32)], [ID, url, bytes(32)],
                [ID, b"url", bytes(32), bytes(32)]):
        raises(DecodeError, commands.decode_down, cbor_dumps(CBORTag(commands.OTA_UPDATE_DOWN, bad)))


# --- LZSS ------------------------------------------------------------------------------------------

def _literals(data):
    acc = nbits = 0
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


def test_lzss_hand_vectors():
    assert bytes(LZSSDecoder().feed(unhex("b0bf7980"))) == b"aaaaaa"     # 'a', then copy 5 from 2031
    assert bytes(LZSSDecoder().feed(unhex("0000"))) == b"  "             # the initial spaces
    assert bytes(LZSSDecoder().feed(unhex("7f80"))) == b"\x00\x00"       # position 2040: not spaces
    d = LZSSDecoder()
    data = bytes(range(256))
    stream = _literals(data)
    out = b"".join(bytes(d.feed(stream[i:i + 5])) for i in range(0, len(stream), 5))
    assert out == data


# --- tar, the OTA file, slots ---------------------------------------------------------------------

def _tar_member(name, data=b"", kind=b"0"):
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:107] = b"0000644"
    h[124:135] = ("%011o" % len(data)).encode()
    h[136:147] = b"00000000000"
    h[148:156] = b"        "
    h[156] = kind[0]
    h[257:263] = b"ustar\x00"
    h[263:265] = b"00"
    h[148:155] = ("%06o\x00" % sum(h)).encode()
    return bytes(h) + data + bytes(-len(data) % 512)


def _tar(*members):
    return b"".join(members) + bytes(1024)


def _ota(payload, magic=0x50594150):
    body = struct.pack("<I", magic) + b"\x00" * 7 + b"\x40" + _literals(payload)
    return struct.pack("<II", len(body), crc32(body) & 0xFFFFFFFF) + body


def test_tar_extracts_and_refuses():
    dest = _tmpdir("tar")
    t = TarExtractor(dest)
    t.feed(_tar(_tar_member(b"lib", kind=b"5"), _tar_member(b"lib/x.py", b"X = 1\n"),
                _tar_member(b"main.py", b"import x\n")))
    t.finish()
    assert open(dest + "/lib/x.py").read() == "X = 1\n"
    for member in (_tar_member(b"../up.py", b"1"), _tar_member(b"/abs.py", b"1"),
                   _tar_member(b"l", kind=b"2"), _tar_member(b"d", kind=b"3")):
        e = raises(OtaError, TarExtractor(dest).feed, _tar(member))
        assert e.code == codes.BAD_ARCHIVE
    slots.remove_tree(dest)


def test_install_file_app_dir_and_refusals():
    base = _tmpdir("install")
    root = base + "/root"
    payload = _tar(_tar_member(b"main.py", b"VERSION = 1\n"))
    with open(base + "/v1.ota", "wb") as f:
        f.write(_ota(payload))
    assert app_dir(root) is None
    sha = install_file(root, base + "/v1.ota")
    assert sha == hashlib.sha256(payload).digest()
    assert slots.active_sha(root) == sha
    assert open(app_dir(root) + "/main.py").read() == "VERSION = 1\n"
    with open(base + "/bad.ota", "wb") as f:
        f.write(_ota(payload, magic=0x23418054))
    e = raises(OtaError, install_file, root, base + "/bad.ota")
    assert e.code == codes.MAGIC_NUMBER
    assert slots.active_sha(root) == sha
    slots.remove_tree(base)


def test_urls_must_be_https_and_short():
    assert parse_url("https://example.com/a.ota") == ("example.com", 443, "/a.ota")
    assert parse_url("https://127.0.0.1:8443/x?y=1") == ("127.0.0.1", 8443, "/x?y=1")
    assert parse_url("https://[::1]:9/") == ("::1", 9, "/")
    for url in ("http://example.com/a.ota", "ftp://x/y", "https://", "https://u@h/x", "https://h:0/x",
                "https://h:x/y", "https://h/" + "a" * 250):
        assert raises(OtaError, parse_url, url).code == codes.URL_PARSE


# --- the session's hook --------------------------------------------------------------------------

class _Ota:
    def __init__(self):
        self.calls = []

    def on_update_command(self, fields, now):
        self.calls.append(("update", fields))

    def on_attached(self, now):
        self.calls.append(("attached", now))


def _update_cmd():
    return cbor_dumps(CBORTag(commands.OTA_UPDATE_DOWN, [ID, "https://h/x", bytes(32), bytes(32)]))


def test_without_ota_an_update_is_answered_unavailable():
    s = DeviceSession(DEV, Registry(), None, "2.0.0")
    link = Link()
    s.on_connected(link, 0)
    s.on_message("/a/d/%s/c/dw" % DEV, _update_cmd(), 1)
    topic, payload = link.pubs[-1]
    assert topic == "/a/d/%s/c/up" % DEV
    assert tohex(payload).startswith("da00010200" + "84" + "50" + tohex(ID) + "e9" + "00")


def test_with_ota_the_session_hands_over_and_reports_attaches():
    s = DeviceSession(DEV, Registry(), None, "2.0.0")
    s.ota = _Ota()
    link = Link()
    s.on_connected(link, 0)
    s.on_message("/a/d/%s/c/dw" % DEV, cbor_dumps(CBORTag(commands.THING_UPDATE, ["t1"])), 1)
    s.on_message("/a/d/%s/c/dw" % DEV, cbor_dumps(CBORTag(commands.LAST_VALUES_UPDATE, [b"\x80"])), 2)
    s.on_message("/a/d/%s/c/dw" % DEV, _update_cmd(), 3)
    assert s.ota.calls == [("attached", 2), ("update", (ID, "https://h/x", bytes(32), bytes(32)))]
