"""The dashboard's HTTP side without a browser: writes need the token, bad input gets a
clear error and changes nothing, good writes reach the device; the token lives in the
0600 admin file and ``run`` prints the address with it."""

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest


def post(url, body, token=None, raw=None):
    """(status, JSON answer) of a POST."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def target(dashboard, device_factory, device_thread):
    """A device attached with a switch and a Location, and the URL of its properties."""
    from arduino_iot_cloud import Location

    dev = device_factory()

    def setup(client, writes):
        client.register("sw1", value=False, on_write=lambda c, v: writes.put(("sw1", v)))
        client.register(Location("pos", lat=1.5, lon=2.5))

    d = device_thread(dev, setup)
    d.wait_attached()
    return dev, d, "%sapi/devices/%s/" % (dashboard.url, dev.device_id)


@pytest.mark.parametrize("header", [None, "", "wrong-token", "Basic xyz"])
def test_a_write_without_the_token_is_refused(dashboard, local_cloud, target, header):
    dev, d, base = target
    local_cloud.wait_for(dev, "sw1", False)
    mark = local_cloud.mark(dev)
    headers = {} if header is None else {"Authorization": header if " " in header else "Bearer " + header}
    for path, body in (("properties/sw1", {"value": True}), ("detach", {}), ("reassign", {}),
                       ("timezone", {"offset": 3600, "until": 2000000000})):
        request = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers=headers,
                                         method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
        answer = json.loads(refused.value.read())
        assert "token" in answer["error"] and dashboard.token not in answer["error"]
    time.sleep(0.3)  # what a wrongly accepted write would take to show
    assert local_cloud.events(dev, since=mark) == []
    assert local_cloud.get(dev, "sw1") is False
    assert d.writes.empty()
    # The same write with the token goes through, so the refusals above were the token's doing.
    assert post(base + "properties/sw1", {"value": True}, dashboard.token) == (200, {"ok": True})
    assert d.writes.get(timeout=5) == ("sw1", True)


@pytest.mark.parametrize("path, body, status, words", [
    ("properties/sw1", {"value": "yes"}, 400, "bool"),
    ("properties/sw1", {"value": 1}, 400, "bool"),
    ("properties/sw1", {}, 400, "value"),
    ("properties/sw1", {"value": [True]}, 400, "takes"),
    ("properties/pos", {"value": {"lat": 1.0, "alt": 3}}, 400, "no field 'alt'"),
    ("properties/pos", {"value": {"lat": "north"}}, 400, "number"),
    ("properties/pos", {"value": 3.0}, 400, "composite"),
    ("timezone", {"offset": "1h", "until": 1}, 400, "offset"),
    ("timezone", {"offset": 3600, "until": -1}, 400, "until"),
    ("reassign", {"thing_id": "a/b/#"}, 400, "thing id"),
])
def test_bad_input_gets_a_clear_error_and_changes_nothing(dashboard, local_cloud, target, path, body, status, words):
    dev, d, base = target
    local_cloud.wait_for(dev, "pos", {"lat": 1.5, "lon": 2.5})
    before, mark = local_cloud.values(dev), local_cloud.mark(dev)
    code, answer = post(base + path, body, dashboard.token)
    assert code == status and words in answer["error"], answer
    assert local_cloud.values(dev) == before
    assert [e for e in local_cloud.events(dev, since=mark) if e[0] not in ("values",)] == []


def test_not_json_and_unknown_devices(dashboard, target):
    dev, d, base = target
    assert post(base + "properties/sw1", None, dashboard.token, raw=b"{nope")[0] == 400
    assert post(base + "properties/sw1", None, dashboard.token, raw=b"[1]")[0] == 400
    code, answer = post(dashboard.url + "api/devices/no-such-device/detach", {}, dashboard.token)
    assert code == 404 and "no-such-device" in answer["error"]


def test_the_page_is_served_with_a_strict_content_policy(dashboard):
    with urllib.request.urlopen(dashboard.url, timeout=10) as response:
        page = response.read().decode()
        policy = response.headers["Content-Security-Policy"]
    assert "/static/app.js" in page and "default-src 'self'" in policy and "unsafe-inline" not in policy
    # The page itself carries no data: everything comes over the token-guarded stream.
    assert dashboard.token not in page


def start_run(workdir):
    """``localcloud run`` in a subprocess: (process, its output up to "Ctrl-C", page URL, token)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "arduino_iot_cloud.localcloud", "--workdir", str(workdir),
                             "run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    lines = []
    deadline = time.monotonic() + 30
    while not any("Ctrl-C" in line for line in lines):
        if time.monotonic() > deadline or proc.poll() is not None:
            stop_run(proc)
            raise AssertionError("run did not start:\n" + "".join(lines))
        lines.append(proc.stdout.readline())
    out = "".join(lines)
    m = re.search(r"dashboard .* (http://127\.0\.0\.1:\d+/)#token=(\S+)", out)
    if not m:
        stop_run(proc)
        raise AssertionError("no dashboard address in:\n" + out)
    return proc, out, m.group(1), m.group(2)


def stop_run(proc):
    proc.terminate()
    proc.wait(15)
    return proc.returncode


def test_run_prints_the_address_with_the_token_kept_in_the_admin_file(tmp_path, browser_parts):
    proc, out, url, token = start_run(tmp_path)
    try:
        assert out.count(token) == 1  # printed once
        admin = tmp_path / "admin.json"
        assert stat.S_IMODE(admin.stat().st_mode) == 0o600
        saved = json.loads(admin.read_text())
        assert saved["dashboard_token"] == token and url.endswith(":%d/" % saved["dashboard_port"])
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
        code, answer = post(url + "api/devices/x/detach", {}, "not-" + token)
        assert code == 401
    finally:
        assert stop_run(proc) == 0
    # The next run serves the same address (port still free) with the same token.
    proc, out, url2, token2 = start_run(tmp_path)
    try:
        assert (url2, token2) == (url, token)
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
    finally:
        # (run prints "Ctrl-C" a moment before it handles SIGTERM: the request above leaves it that moment)
        assert stop_run(proc) == 0


def test_demo_prints_the_dashboard_address(tmp_path, browser_parts):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "arduino_iot_cloud.localcloud", "--workdir", str(tmp_path),
                             "demo"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 30
        while not any("device:    led" in line for line in lines):  # the demo device answers
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            lines.append(proc.stdout.readline())
        m = re.search(r"dashboard .* (http://127\.0\.0\.1:\d+/)#token=(\S+)", "".join(lines))
        assert m, "".join(lines)
        with urllib.request.urlopen(m.group(1), timeout=10) as response:
            assert response.status == 200
    finally:
        proc.terminate()
        proc.wait(15)


def test_the_device_library_never_imports_the_dashboard():
    code = ("import sys, arduino_iot_cloud, arduino_iot_cloud.localcloud, arduino_iot_cloud.localcloud.cli; "
            "print(sorted(m for m in sys.modules if m.startswith(('aiohttp', 'arduino_iot_cloud.localcloud.web'))))")
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, timeout=60).stdout
    assert out.strip() == "[]"


def test_ota_upload_is_checked_before_anything_is_sent(dashboard, local_cloud, target, tmp_path, monkeypatch):
    import binascii
    import struct

    from arduino_iot_cloud.localcloud.web import server
    from arduino_iot_cloud.ota import pack

    dev, d, base = target
    good = pack.build_ota_file(b"print('v2')\n" * 40)
    crc_bad = good[:-1] + bytes([good[-1] ^ 1])
    body = struct.pack("<I", 0x23418054) + good[12:]
    magic_bad = struct.pack("<II", len(body), binascii.crc32(body)) + body
    mark = local_cloud.mark(dev)
    for raw, status, words in [(b"", 400, "request body"), (good[:-3], 400, "header says"),
                               (crc_bad, 400, "CRC-32"), (magic_bad, 400, "magic number 0x23418054"),
                               (good[:10], 400, "20-byte header")]:
        code, answer = post(base + "ota", None, dashboard.token, raw=raw)
        assert (code, words in answer.get("error", "")) == (status, True), answer
    assert post(base + "ota", None, None, raw=good)[0] == 401
    monkeypatch.setattr(server, "OTA_FILE_MAX", len(good) - 1)
    code, answer = post(base + "ota", None, dashboard.token, raw=good)
    assert code == 413 and "at most" in answer["error"]
    monkeypatch.undo()
    assert [e for e in local_cloud.events(dev, since=mark) if e[0].startswith("ota")] == []
    # The same file whole goes out, with the SHA-256 of its payload as finalSha256.
    code, answer = post(base + "ota", None, dashboard.token, raw=good)
    assert code == 200 and answer["sha256"] == hashlib.sha256(pack.read_ota_file(good)).hexdigest()
    sent = local_cloud.wait_event(dev, "ota_sent", since=mark)
    assert sent["id"] == answer["id"] and sent["final_sha"] == answer["sha256"]
    # this device was made without ota=: it answers OTAUnavailable
    local_cloud.wait_ota(dev, "OTAUnavailable", answer["id"], since=mark)
