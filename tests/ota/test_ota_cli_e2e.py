"""The whole OTA feature driven as a user drives it, every part a separate process:
`python -m arduino_iot_cloud.localcloud run`, a device from examples/ota_device.py
(launching examples/ota_app), `python -m arduino_iot_cloud.ota pack` of a changed
application, then `python -m arduino_iot_cloud.localcloud ota DEVICE app.ota`."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from otatools import LAUNCHER, ROOT_DIR, Supervisor

from arduino_iot_cloud.ota.pack import app_tar

pytestmark = pytest.mark.e2e

SRC = os.path.join(ROOT_DIR, "src")
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p),
           PYTHONUNBUFFERED="1")
ENV = {k: v for k, v in ENV.items() if not k.startswith("ARDUINO_IOT_CLOUD_")}


def cli(module, *argv, timeout=60):
    out = subprocess.run([sys.executable, "-m", module] + [str(a) for a in argv], capture_output=True, text=True,
                         env=ENV, timeout=timeout)
    return out.returncode, out.stdout, out.stderr


def wait_for(cond, what, timeout):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("no %s within %s s" % (what, timeout))
        time.sleep(0.1)


@pytest.fixture
def cloud_process(tmp_path):
    wd = tmp_path / "wd"
    proc = subprocess.Popen([sys.executable, "-m", "arduino_iot_cloud.localcloud", "--workdir", str(wd), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    try:
        for line in proc.stdout:
            if "Ctrl-C" in line:
                break
        assert (wd / "run.json").exists()
        yield wd
    finally:
        proc.terminate()
        proc.wait(20)


def test_pack_send_and_watch_with_the_commands(cloud_process, tmp_path):
    wd = cloud_process
    status, out, err = cli("arduino_iot_cloud.localcloud", "--workdir", wd, "add-device", "--json")
    assert status == 0, err
    dev = json.loads(out)
    status, out, err = cli("arduino_iot_cloud.localcloud", "--workdir", wd, "env", dev["device_id"])
    assert status == 0, err
    env = dict(ENV, DEVICE_ID=dev["device_id"], SECRET_KEY=dev["secret"], OTA_ROOT=str(tmp_path / "root"),
               OTA_RETRY_MS="200")
    for line in out.splitlines():  # export NAME=VALUE
        if line.startswith("export "):
            name, value = line[len("export "):].split("=", 1)
            env[name] = value.strip("'\"")
    assert "ARDUINO_IOT_CLOUD_CA" in env

    # version 1: packed and installed by hand (first provisioning), then started
    v1 = tmp_path / "v1.ota"
    assert cli("arduino_iot_cloud.ota", "pack", os.path.join(ROOT_DIR, "examples", "ota_app"), "-o", v1)[0] == 0
    status, out, err = cli("arduino_iot_cloud.ota", "install", tmp_path / "root", v1)
    assert status == 0, err
    device = Supervisor([sys.executable, LAUNCHER], env, str(tmp_path / "device.log"), cwd=ROOT_DIR)
    try:
        wait_for(lambda: "ready on thing" in device.output(), "attach of version 1", 30)
        # version 2: the example application with one line changed
        app = tmp_path / "app"
        shutil.copytree(os.path.join(ROOT_DIR, "examples", "ota_app"), str(app))
        main = app / "main.py"
        main.write_text(main.read_text().replace("VERSION = 1\n", "VERSION = 2\n"))
        v2 = tmp_path / "app.ota"
        status, out, err = cli("arduino_iot_cloud.ota", "pack", app, "-o", v2)
        assert status == 0, err
        sha2 = hashlib.sha256(app_tar(str(app))).hexdigest()
        status, out, err = cli("arduino_iot_cloud.localcloud", "--workdir", wd, "ota", dev["device_id"], v2,
                               "--timeout", "60", timeout=90)
        assert status == 0, out + err + device.output()[-3000:]
        states = [line.split(" ", 1)[1] for line in out.splitlines() if line[:2].isdigit()]
        assert states[0].startswith("sent OTA ") and states[-1] == "new SHA-256 %s" % sha2, out
        assert "StartOTA" in states and "FlashOTA" in states and "Reboot" in states, out
        assert out.splitlines()[-1] == "the device runs the update"
        wait_for(lambda: "application version 2 starting" in device.output(), "version 2", 10)
        assert device.proc.poll() is None and "Traceback" not in device.output()
        status, out, _ = cli("arduino_iot_cloud.localcloud", "--workdir", wd, "get", dev["device_id"], "version")
        assert (status, out.strip()) == (0, "2")
        status, out, _ = cli("arduino_iot_cloud.localcloud", "--workdir", wd, "list")
        assert "app=%s" % sha2 in out
    finally:
        device.stop()
