"""`arduino-localcloud ota DEVICE FILE` against `run` in another process, with a scripted paho device
that downloads the file over HTTPS and answers with progress reports."""

import hashlib
import http.client
import json
import ssl
import threading
import time
import urllib.parse

import cbor2
import pytest
from lc_pahodevice import PahoDevice
from test_localcloud_cli import run_cli, running  # noqa: F401 (the fixture)

from arduino_iot_cloud.localcloud import Device, LocalCloud
from arduino_iot_cloud.ota import pack

pytestmark = pytest.mark.e2e

OTA_BEGIN, OTA_UPDATE, OTA_PROGRESS = 0x010000, 0x010100, 0x010200
OLD_SHA = hashlib.sha256(b"version 1").digest()


class ScriptedDevice(threading.Thread):
    """Reports OLD_SHA, waits for OtaUpdateCmdDown, downloads and checks the file, then answers as
    ``outcome`` says: "update" (StartOTA, Fetch, FlashOTA, Reboot, reconnect reporting the new SHA-256),
    "rollback" (the same, but reports OLD_SHA after the restart), "fail" (Fail -7), "silent"."""

    def __init__(self, cloud, dev, outcome):
        super().__init__(daemon=True)
        self.cloud, self.dev, self.outcome = cloud, dev, outcome
        self.ready = threading.Event()
        self.error = None
        self.devices = []

    def connect(self):
        d = PahoDevice(self.cloud, self.dev)
        self.devices.append(d)
        d.connect()
        d.subscribe("/a/d/%s/c/dw" % self.dev.device_id)
        return d

    def progress(self, d, ota_id, state, data=0):
        d.command(OTA_PROGRESS, [ota_id, cbor2.CBORSimpleValue(state), data, int(time.time() * 1e6)])

    def run(self):
        try:
            d = self.connect()
            d.command(OTA_BEGIN, [OLD_SHA])
            self.ready.set()
            tag, (ota_id, url, initial, final) = d.expect_command(timeout=15)
            assert tag == OTA_UPDATE
            if self.outcome == "silent":
                return
            self.progress(d, ota_id, 4)  # StartOTA
            parts = urllib.parse.urlsplit(url)
            conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=10,
                                               context=ssl.create_default_context(cafile=self.cloud.ca_file))
            conn.request("GET", parts.path)
            blob = conn.getresponse().read()
            conn.close()
            self.progress(d, ota_id, 5, len(blob))  # Fetch
            if self.outcome == "fail":
                self.progress(d, ota_id, 8, -7)
                return
            new_sha = hashlib.sha256(pack.read_ota_file(blob)).digest()
            assert new_sha == final
            self.progress(d, ota_id, 6)  # FlashOTA
            self.progress(d, ota_id, 7)  # Reboot
            d.close()
            d = self.connect()
            d.command(OTA_BEGIN, [new_sha if self.outcome == "update" else OLD_SHA])
        except Exception as exc:  # reported by the test
            self.error = exc
            self.ready.set()

    def close(self):
        for d in self.devices:
            d.close()


@pytest.fixture
def ota_setup(running, capsys, tmp_path):
    """(workdir, device id, OTA file, its payload SHA-256 hex, make_device(outcome))."""
    wd, _, _ = running
    status, out, _ = run_cli(capsys, wd, "add-device", "--json")
    info = json.loads(out)
    dev = Device(info["device_id"], thing_id=info["thing_id"], secret=info["secret"])
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("print('version 2')\n")
    ota = tmp_path / "app.ota"
    sha = pack.pack_file(str(app), str(ota))
    made = []

    def make(outcome):
        for earlier in made:  # one connection per device id: the broker would drop one of two
            earlier.close()
        device = ScriptedDevice(LocalCloud(wd), dev, outcome)
        device.start()
        assert device.ready.wait(10) and device.error is None, device.error
        made.append(device)
        return device

    yield wd, dev.device_id, ota, sha, make
    for device in made:
        device.close()


def test_ota_update_shows_progress_and_new_sha(ota_setup, capsys):
    wd, device_id, ota, sha, make = ota_setup
    device = make("update")
    status, out, err = run_cli(capsys, wd, "ota", device_id[:8], str(ota), "--timeout", "20")
    device.join(5)
    assert device.error is None, device.error
    assert status == 0, out + err
    lines = [line.split(" ", 1)[1] for line in out.splitlines() if line[:2].isdigit()]
    assert lines[0].startswith("sent OTA ") and sha in lines[0]
    assert lines[1:] == ["StartOTA", "Fetch %d bytes" % ota.stat().st_size, "FlashOTA", "Reboot",
                         "new SHA-256 %s" % sha]
    assert out.splitlines()[-1] == "the device runs the update"
    # the cloud keeps the reported SHA-256: list shows it
    status, out, _ = run_cli(capsys, wd, "list")
    assert "app=%s" % sha in out
    status, out, _ = run_cli(capsys, wd, "list", "--json")
    assert [d["ota_sha"] for d in json.loads(out) if d["device_id"] == device_id] == [sha]


def test_ota_failure_and_rollback_exit_1(ota_setup, capsys):
    wd, device_id, ota, sha, make = ota_setup
    make("fail")
    status, out, _ = run_cli(capsys, wd, "ota", device_id, str(ota), "--timeout", "20")
    assert status == 1
    assert "Fail -7 (MagicNumber)" in out and "the update failed" in out
    make("rollback")
    status, out, _ = run_cli(capsys, wd, "ota", device_id, str(ota), "--timeout", "20")
    assert status == 1
    assert "new SHA-256 %s" % OLD_SHA.hex() in out and "went back to its previous application" in out


def test_ota_timeout_and_bad_input(ota_setup, capsys, tmp_path):
    wd, device_id, ota, sha, make = ota_setup
    make("silent")
    t0 = time.monotonic()
    status, out, err = run_cli(capsys, wd, "ota", device_id, str(ota), "--timeout", "1",
                               "--initial-sha", "AB" * 32)
    assert status == 1 and "no end of the update within 1 s (last report: nothing yet)" in err
    assert time.monotonic() - t0 < 10
    bad = tmp_path / "bad.ota"
    bad.write_bytes(ota.read_bytes()[:-3])
    for argv, message in [((str(bad),), "not a Python application OTA file"),
                          ((str(tmp_path / "missing.ota"),), "cannot read"),
                          ((str(ota), "--initial-sha", "abc"), "64 hex digits")]:
        status, _, err = run_cli(capsys, wd, "ota", device_id, *argv)
        assert status == 1 and message in err, err
    status, _, err = run_cli(capsys, wd, "ota", "nosuchdevice", str(ota))
    assert status == 1 and "no device" in err


def test_ota_to_an_offline_device_warns(ota_setup, capsys):
    wd, _, ota, _, _ = ota_setup
    offline = json.loads(run_cli(capsys, wd, "add-device", "--json")[1])["device_id"]
    status, out, err = run_cli(capsys, wd, "ota", offline, str(ota), "--timeout", "0.5")
    assert status == 1 and "is offline" in out and "no end of the update" in err
