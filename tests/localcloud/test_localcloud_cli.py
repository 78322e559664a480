"""The CLI: offline commands on the work directory, and get/set/watch against `run` in another process."""

import json
import os
import signal
import subprocess
import sys
import time

import cbor2
import pytest

from arduino_iot_cloud.localcloud import cli

pytestmark = pytest.mark.e2e


def run_cli(capsys, workdir, *argv):
    """cli.main in this process; return (status, stdout, stderr)."""
    status = cli.main(["--workdir", str(workdir), *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_offline_commands(tmp_path, capsys):
    wd = tmp_path / "wd"
    status, out, _ = run_cli(capsys, wd, "add-device", "--json", "--variant", "event",
                             "--property", "temp=21.5", "--property", 'loc={"lat":1,"lon":2}', "--property", "s=text")
    assert status == 0
    dev = json.loads(out)
    assert dev["variant"] == "event" and dev["auth"] == "password" and len(dev["secret"]) >= 20
    status, out, _ = run_cli(capsys, wd, "add-device", "--cert", "--no-thing")
    assert status == 0 and "cert.der" in out and "key.pem" in out
    status, out, _ = run_cli(capsys, wd, "list", "--json")
    assert [d["thing_id"] == "" for d in json.loads(out)].count(True) == 1
    status, out, _ = run_cli(capsys, wd, "get", dev["device_id"][:8], "loc")
    assert (status, json.loads(out)) == (0, {"lat": 1, "lon": 2})
    assert json.loads(run_cli(capsys, wd, "get", dev["device_id"], "s")[1]) == "text"
    status, _, err = run_cli(capsys, wd, "get", dev["device_id"], "missing")
    assert status == 1 and "no value" in err
    status, _, err = run_cli(capsys, wd, "set", dev["device_id"], "temp", "1")
    assert status == 1 and "no local cloud runs" in err
    status, _, err = run_cli(capsys, wd, "env", dev["device_id"])
    assert status == 1 and "not run" in err
    # the secret is in the password file only as a hash, and nowhere in the store
    assert dev["secret"] not in (wd / "devices.json").read_text()
    assert dev["secret"] not in (wd / "broker" / "passwd_devices").read_text()


@pytest.fixture
def running(tmp_path):
    """`python -m arduino_iot_cloud.localcloud run` in a subprocess, stopped with SIGINT."""
    wd = tmp_path / "wd"
    proc = subprocess.Popen([sys.executable, "-m", "arduino_iot_cloud.localcloud", "--workdir", str(wd), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        assert (wd / "run.json").exists(), "".join(lines)
        yield wd, proc, lines
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()


def test_run_serves_cli_from_another_process(running, capsys, tmp_path):
    wd, proc, banner = running
    info = json.loads((wd / "run.json").read_text())
    assert any(str(info["ports"]["password"]) in line for line in banner)
    # add-device while running: the running cloud reloads and serves it at once
    status, out, _ = run_cli(capsys, wd, "add-device", "--json", "--variant", "command", "--property", "sw=false")
    dev = json.loads(out)
    import paho.mqtt.client as mqtt

    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev["device_id"], protocol=mqtt.MQTTv311)
    c.tls_set(ca_certs=str(wd / "pki" / "ca.pem"))
    c.username_pw_set(dev["device_id"], dev["secret"])
    c.on_message = lambda client, userdata, msg: got.append((msg.topic, msg.payload))
    assert c.connect("127.0.0.1", info["ports"]["password"]) == 0
    c.loop_start()
    try:
        c.subscribe("/a/t/%s/e/i" % dev["thing_id"], 1)
        c.subscribe("/a/d/%s/c/dw" % dev["device_id"], 1)
        c.publish("/a/d/%s/c/up" % dev["device_id"], cbor2.dumps(cbor2.CBORTag(0x010300, [""])), 1)
        _wait(lambda: got, "ThingUpdate")
        assert cbor2.loads(got.pop()[1]).value[0] == dev["thing_id"]
        assert run_cli(capsys, wd, "set", dev["device_id"], "sw", "true")[0] == 0
        _wait(lambda: got, "the write")
        assert cbor2.loads(got.pop()[1]) == [{0: "sw", 4: True}]
        c.publish("/a/t/%s/e/o" % dev["thing_id"], cbor2.dumps([{0: "temp", 2: 19.5}]), 1).wait_for_publish(5)
        _wait(lambda: run_cli(capsys, wd, "get", dev["device_id"], "temp")[1].strip() == "19.5", "temp in get")
        # watch shows the retained state, which the emulator republishes within 50 ms of a change
        def watched():
            out = run_cli(capsys, wd, "watch", dev["device_id"], "--timeout", "1")[1]
            return "temp = 19.5" in out and "sw = true" in out and "connected" in out
        _wait(watched, "temp, sw and connected in watch", timeout=10)
        status, out, _ = run_cli(capsys, wd, "list")
        assert dev["device_id"] in out and "connected" in out
        status, out, _ = run_cli(capsys, wd, "env", dev["device_id"])
        assert "export ARDUINO_IOT_CLOUD_PORT=%d" % info["ports"]["password"] in out
        assert dev["secret"] not in out
        status, out, _ = run_cli(capsys, wd, "reassign", dev["device_id"], "thing-b")
        assert out.strip() == "thing-b"
        _wait(lambda: got, "ThingUpdate(thing-b)")
        assert list(cbor2.loads(got.pop()[1]).value) == ["thing-b"]
    finally:
        c.disconnect()
        c.loop_stop()
    # Ctrl-C (SIGINT, even for a background job) stops everything
    pid = json.loads((wd / "run.json").read_text())["pid"]
    mosquitto = _mosquitto_pids(wd)
    assert mosquitto
    os.kill(pid, signal.SIGINT)
    assert proc.wait(10) == 0
    assert not (wd / "run.json").exists()
    assert _mosquitto_pids(wd) == []
    # and the last values were saved
    status, out, _ = run_cli(capsys, wd, "list", "--json")
    assert json.loads(out)[0]["thing_id"] == "thing-b"


def _mosquitto_pids(wd):
    out = subprocess.run(["pgrep", "-f", str(wd / "broker" / "mosquitto.conf")], capture_output=True, text=True)
    return out.stdout.split()


def _wait(cond, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("waited %.0f s for %s" % (timeout, what))
        time.sleep(0.02)


def test_module_entry_point_prints_help():
    out = subprocess.run([sys.executable, "-m", "arduino_iot_cloud.localcloud", "--help"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0
    for command in ("run", "add-device", "list", "get", "set", "watch", "env", "issue-cert"):
        assert command in out.stdout
