"""The local cloud's OTA side: the HTTPS file server (Range, faults) and the OTA commands in the emulator.

The server is checked with http.client over TLS verifying the local CA; the emulator
with a plain paho "device" that publishes hand-built OtaBeginUp / OtaProgressCmdUp.
"""

import hashlib
import http.client
import os
import ssl
import time
import urllib.parse

import cbor2
import pytest

from arduino_iot_cloud.ota import pack

pytestmark = pytest.mark.e2e

OTA_BEGIN, OTA_UPDATE, OTA_PROGRESS = 0x010000, 0x010100, 0x010200


@pytest.fixture(scope="module")
def ota_file(tmp_path_factory):
    """An OTA file of a small app: (path, tar payload, file bytes)."""
    d = tmp_path_factory.mktemp("ota")
    app = d / "app"
    (app / "lib").mkdir(parents=True)
    (app / "main.py").write_text("import lib.util\nprint('version 1')\n")
    (app / "lib" / "util.py").write_bytes(os.urandom(3000).hex().encode())  # ~6 KB, compresses to ~half
    out = d / "app.ota"
    pack.pack_file(str(app), str(out))
    return out, pack.app_tar(str(app)), out.read_bytes()


def connection(cloud, url, host=None):
    """An HTTPS connection to the URL's server that verifies the local CA (and the host name)."""
    parts = urllib.parse.urlsplit(url)
    ctx = ssl.create_default_context(cafile=cloud.ca_file)
    return http.client.HTTPSConnection(host or parts.hostname, parts.port, context=ctx, timeout=10), parts.path


def get(conn, path, range_=None, method="GET"):
    conn.request(method, path, headers={"Range": range_} if range_ else {})
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), resp.read()


# -- the file server ---------------------------------------------------------------------------

def test_full_get_and_head(local_cloud, ota_file):
    path, _, blob = ota_file
    url = local_cloud.serve_ota(path)
    assert url.startswith("https://127.0.0.1:") and url.endswith(".ota")
    conn, p = connection(local_cloud, url)
    status, headers, body = get(conn, p)
    assert (status, body) == (200, blob)
    assert headers["Content-Length"] == str(len(blob)) and headers["Accept-Ranges"] == "bytes"
    status, headers, body = get(conn, p, method="HEAD")  # same keep-alive connection
    assert (status, headers["Content-Length"], body) == (200, str(len(blob)), b"")
    conn.close()
    # the certificate also holds for the name localhost
    conn, p = connection(local_cloud, url, host="localhost")
    assert get(conn, p)[0] == 200
    conn.close()


@pytest.mark.parametrize("range_,status,first,last", [
    ("bytes=0-0", 206, 0, 0),
    ("bytes=10-19", 206, 10, 19),
    ("bytes=100-", 206, 100, None),
    ("bytes=-7", 206, -7, None),
    ("bytes=0-99999999", 206, 0, None),  # the end is clamped to the file
    ("bytes=-99999999", 206, 0, None),
    ("bytes=5-2", 200, 0, None),  # invalid: ignored
    ("bytes=0-1,5-6", 200, 0, None),  # several ranges: we serve the whole file
    ("items=0-1", 200, 0, None),
    ("bytes=SIZE-", 416, None, None),  # starts at the end
    ("bytes=-0", 416, None, None),
])
def test_range(local_cloud, ota_file, range_, status, first, last):
    path, _, blob = ota_file
    url = local_cloud.serve_ota(path)
    conn, p = connection(local_cloud, url)
    got_status, headers, body = get(conn, p, range_.replace("SIZE", str(len(blob))))
    assert got_status == status
    if status == 416:
        assert headers["Content-Range"] == "bytes */%d" % len(blob) and body == b""
    else:
        expected = blob[first:last + 1 if last is not None else None]
        assert body == expected and headers["Content-Length"] == str(len(expected))
    if status == 206:
        start = first % len(blob)
        assert headers["Content-Range"] == "bytes %d-%d/%d" % (start, start + len(body) - 1, len(blob))
    # the connection stays usable after every kind of answer
    assert get(conn, p, "bytes=1-2")[2] == blob[1:3]
    conn.close()


def test_resume_in_chunks_on_one_connection(local_cloud, ota_file):
    path, _, blob = ota_file
    conn, p = connection(local_cloud, local_cloud.serve_ota(path))
    parts = [get(conn, p, "bytes=%d-%d" % (i, i + 999))[2] for i in range(0, len(blob), 1000)]
    assert b"".join(parts) == blob
    conn.close()


def test_unknown_url_and_wrong_ca(local_cloud, ota_file, tmp_path):
    path, _, _ = ota_file
    url = local_cloud.serve_ota(path)
    conn, p = connection(local_cloud, url)
    assert get(conn, p.replace("/ota/", "/ota/x"))[0] == 404
    assert get(conn, "/ota/" + "A" * 32 + ".ota")[0] == 404
    assert get(conn, "/")[0] == 404
    conn.close()
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=ssl.create_default_context(), timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", parts.path)
    conn.close()


def test_each_url_serves_a_copy(local_cloud, ota_file, tmp_path):
    path, _, blob = ota_file
    mine = tmp_path / "mine.ota"
    mine.write_bytes(blob)
    url = local_cloud.serve_ota(mine)
    mine.write_bytes(b"changed later")
    other = local_cloud.serve_ota(mine)
    assert url != other
    conn, p = connection(local_cloud, url)
    assert get(conn, p)[2] == blob
    conn.close()


def test_fault_status(local_cloud, ota_file):
    path, _, blob = ota_file
    url = local_cloud.serve_ota(path, status=404)
    conn, p = connection(local_cloud, url)
    assert get(conn, p)[0] == 404
    assert get(conn, p, "bytes=0-9")[0] == 404
    local_cloud.set_ota_faults(url, status=500)
    assert get(conn, p)[0] == 500
    local_cloud.set_ota_faults(url)
    assert get(conn, p)[2] == blob
    conn.close()


def test_fault_cut_then_resume(local_cloud, ota_file, device_factory):
    path, _, blob = ota_file
    dev = device_factory()
    url = local_cloud.serve_ota(path, dev, cut_at=1000)
    conn, p = connection(local_cloud, url)
    conn.request("GET", p)
    resp = conn.getresponse()
    assert resp.status == 200 and resp.headers["Content-Length"] == str(len(blob))
    with pytest.raises(http.client.IncompleteRead) as err:
        resp.read()
    assert err.value.partial == blob[:1000]
    conn.close()
    # the cut happens once: the resumed request gets the rest
    conn, p = connection(local_cloud, url)
    status, _, rest = get(conn, p, "bytes=1000-")
    assert status == 206 and blob[:1000] + rest == blob
    conn.close()
    https = [d for k, d in local_cloud.events(dev) if k == "ota_http"]
    assert [(d["status"], d["range"], d["bytes"]) for d in https] == [(200, None, 1000), (206, "bytes=1000-", len(blob) - 1000)]


def test_fault_cut_every_time(local_cloud, ota_file):
    path, _, blob = ota_file
    url = local_cloud.serve_ota(path, cut_at=500, cuts=3)
    for _ in range(3):
        conn, p = connection(local_cloud, url)
        conn.request("GET", p, headers={"Range": "bytes=100-"})
        resp = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead) as err:
            resp.read()
        assert err.value.partial == blob[100:500]
        conn.close()
    conn, p = connection(local_cloud, url)
    assert get(conn, p, "bytes=100-")[2] == blob[100:]
    # a range that does not reach the cut point is never cut
    url = local_cloud.serve_ota(path, cut_at=500, cuts=1)
    conn, p = connection(local_cloud, url)
    assert get(conn, p, "bytes=0-499")[2] == blob[:500]
    conn.close()


@pytest.mark.parametrize("delta", [-10, 25])
def test_fault_wrong_length(local_cloud, ota_file, delta):
    path, _, blob = ota_file
    conn, p = connection(local_cloud, local_cloud.serve_ota(path, length_delta=delta))
    status, headers, body = get(conn, p)
    assert status == 200 and headers["Content-Length"] == str(len(blob) + delta) == str(len(body))
    assert body == (blob[:delta] if delta < 0 else blob + bytes(delta))
    with pytest.raises(pack.PackError, match="header says"):
        pack.read_ota_file(body)
    conn.close()


def test_fault_rate(local_cloud, ota_file):
    path, _, blob = ota_file
    conn, p = connection(local_cloud, local_cloud.serve_ota(path, rate=20000))
    t0 = time.monotonic()
    body = get(conn, p, "bytes=0-3999")[2]
    assert body == blob[:4000]
    assert time.monotonic() - t0 >= 0.15  # 4000 bytes at 20000 B/s: 0.2 s at least
    conn.close()


def test_fault_knobs_are_checked(local_cloud, ota_file):
    path, _, _ = ota_file
    with pytest.raises(ValueError):
        local_cloud.serve_ota(path, rate=0)
    with pytest.raises(ValueError):
        local_cloud.serve_ota(path, cut_at=-1)
    with pytest.raises(TypeError):
        local_cloud.serve_ota(path, cut_after=10)  # a misspelled knob is an error, not ignored
    with pytest.raises(KeyError):
        local_cloud.set_ota_faults("https://127.0.0.1:1/ota/nothing.ota", status=404)


# -- the OTA commands ------------------------------------------------------------------------

def test_send_ota_command_and_download(local_cloud, device_factory, paho_device, ota_file):
    path, tar, blob = ota_file
    dev = device_factory(variant="event")  # OTA commands go to c/dw whatever the attach variant
    d = paho_device(dev)
    d.connect()
    d.subscribe("/a/d/%s/c/dw" % dev.device_id)
    ota_id = local_cloud.send_ota(dev, path)
    tag, fields = d.expect_command()
    assert tag == OTA_UPDATE and len(fields) == 4
    raw_id, url, initial, final = fields
    assert raw_id == bytes.fromhex(ota_id) and len(raw_id) == 16
    assert isinstance(url, str) and url.startswith("https://127.0.0.1:")
    assert initial == bytes(32)
    assert final == hashlib.sha256(tar).digest()
    sent = local_cloud.wait_event(dev, "ota_sent")
    assert sent == {"id": ota_id, "url": url, "initial_sha": "00" * 32, "final_sha": final.hex()}
    # what a device does: download, check, decompress, compare with finalSha256
    conn, p = connection(local_cloud, url)
    assert hashlib.sha256(pack.read_ota_file(get(conn, p)[2])).digest() == final
    conn.close()


def test_send_ota_options(local_cloud, device_factory, paho_device, ota_file, tmp_path):
    path, _, _ = ota_file
    dev = device_factory()
    d = paho_device(dev)
    d.connect()
    d.subscribe("/a/d/%s/c/dw" % dev.device_id)
    local_cloud.send_ota(dev, path, initial_sha="ab" * 32, url="http://127.0.0.1:1/app.ota", ota_id="01" * 16)
    assert d.expect_command()[1][:3] == [b"\x01" * 16, "http://127.0.0.1:1/app.ota", b"\xab" * 32]
    # a damaged file needs final_sha given (the test of a device's CRC check)
    bad = tmp_path / "bad.ota"
    bad.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(pack.PackError):
        local_cloud.send_ota(dev, bad)
    local_cloud.send_ota(dev, bad, final_sha="cd" * 32)
    assert d.expect_command()[1][3] == b"\xcd" * 32
    for wrong in ("ab", "zz" * 32):
        with pytest.raises(ValueError, match="64 hex digits"):
            local_cloud.send_ota(dev, path, initial_sha=wrong)
    with pytest.raises(ValueError, match="256"):
        local_cloud.send_ota(dev, path, url="https://127.0.0.1/" + "x" * 250)
    with pytest.raises(KeyError):
        local_cloud.send_ota("no-such-device", path)


def test_ota_begin_and_progress_are_decoded(local_cloud, device_factory, paho_device):
    dev = device_factory(variant="command")
    d = paho_device(dev)
    d.connect()
    mark = local_cloud.mark(dev)
    sha = hashlib.sha256(b"v1").digest()
    d.command(OTA_BEGIN, [sha])
    assert local_cloud.wait_event(dev, "ota_begin", since=mark) == sha.hex()
    assert local_cloud.ota_sha(dev) == sha.hex()
    assert local_cloud.emulator.state(dev)["ota_sha"] == sha.hex()
    ota_id = bytes(range(16))
    now = int(time.time() * 1e6)
    d.command(OTA_PROGRESS, [ota_id, cbor2.CBORSimpleValue(5), 20480, now])
    d.command(OTA_PROGRESS, [ota_id, cbor2.CBORSimpleValue(8), -7, now + 1])
    d.command(OTA_PROGRESS, [ota_id, cbor2.CBORSimpleValue(8), -99, now + 2])
    fetch = local_cloud.wait_ota(dev, "Fetch", ota_id.hex(), since=mark)
    assert fetch == {"id": ota_id.hex(), "state": "Fetch", "state_code": 5, "state_data": 20480, "time": now}
    fail = local_cloud.wait_ota(dev, "Fail", since=mark)
    assert (fail["state_data"], fail["error"]) == (-7, "MagicNumber")
    local_cloud.wait_event(dev, "ota_progress", lambda p: p["state_data"] == -99 and "error" not in p, since=mark)
    # a newer OtaBeginUp replaces the recorded SHA-256
    d.command(OTA_BEGIN, [hashlib.sha256(b"v2").digest()])
    local_cloud.wait_event(dev, "ota_begin", hashlib.sha256(b"v2").hexdigest(), since=mark)
    assert local_cloud.ota_sha(dev) == hashlib.sha256(b"v2").hexdigest()


@pytest.mark.parametrize("tag,fields,error", [
    (OTA_BEGIN, [b"\x00" * 31], "32-byte"),
    (OTA_BEGIN, [], "fields"),
    (OTA_PROGRESS, [b"\x00" * 16, 5, 0, 0], "simple value"),  # the state as an int
    (OTA_PROGRESS, [b"\x00" * 16, cbor2.CBORSimpleValue(10), 0, 0], "unknown"),
    (OTA_PROGRESS, [b"\x00" * 15, cbor2.CBORSimpleValue(5), 0, 0], "16-byte"),
    (OTA_PROGRESS, [b"\x00" * 16, cbor2.CBORSimpleValue(5), 0, -1], "unsigned"),
    (OTA_PROGRESS, [b"\x00" * 16, cbor2.CBORSimpleValue(5), 1.5, 0], "integer"),
])
def test_malformed_ota_messages_are_recorded(local_cloud, device_factory, paho_device, tag, fields, error):
    dev = device_factory()
    d = paho_device(dev)
    d.connect()
    d.command(tag, fields)
    bad = local_cloud.wait_event(dev, "bad_ota")
    assert error in bad["error"]
    assert local_cloud.ota_sha(dev) is None
    # the emulator goes on serving the device
    d.command(OTA_BEGIN, [b"\x11" * 32])
    local_cloud.wait_event(dev, "ota_begin", "11" * 32)


def test_client_that_goes_away_is_recorded(local_cloud, ota_file, device_factory):
    path, _, blob = ota_file
    dev = device_factory()
    conn, p = connection(local_cloud, local_cloud.serve_ota(path, dev, rate=5000))  # ~1 s for the file
    conn.request("GET", p)
    resp = conn.getresponse()
    assert len(resp.read(300)) == 300
    conn.sock.close()  # a device killed mid-download
    conn.close()
    got = local_cloud.wait_event(dev, "ota_http", timeout=10)
    assert "error" in got and 300 <= got["bytes"] < len(blob), got
