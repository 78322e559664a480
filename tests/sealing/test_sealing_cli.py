"""python -m arduino_iot_cloud.sealing: new (files 0600, never replaced; or printed once),
seal and unseal with the context files, and readable errors without secrets."""

import json
import os
import subprocess
import sys

SRC = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src"))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "arduino_iot_cloud.sealing"] + list(args),
                          env=dict(os.environ, PYTHONPATH=SRC), capture_output=True, text=True, timeout=60)


def test_new_seal_unseal(tmp_path):
    keys = str(tmp_path / "keys")
    r = cli("new", "--out", keys, "--device-id", "door", "--owner-id", "me")
    assert r.returncode == 0, r.stderr
    device, owner = os.path.join(keys, "device.json"), os.path.join(keys, "owner.json")
    for path in (device, owner):
        assert os.stat(path).st_mode & 0o777 == 0o600
    with open(device) as f:
        data = json.load(f)
    secret = data["master_secret"]
    assert len(secret) == 64 and data["sender_id"] == b"door".hex() and data["recipient_id"] == b"me".hex()
    assert secret not in r.stdout + r.stderr
    # Both ways, every value type; VALUE is JSON when it parses, else a string.
    for value, want in (("true", True), ("42", 42), ("21.5", 21.5), ('"7"', "7"), ("open sesame", "open sesame")):
        sealed = cli("seal", "--context", owner, "code", value)
        assert sealed.returncode == 0, sealed.stderr
        text = sealed.stdout.strip()
        opened = cli("unseal", "--context", device, "code", text)
        assert opened.returncode == 0, opened.stderr
        assert json.loads(opened.stdout) == want
    # The state moved on in the files (0600 kept); the secret stayed.
    assert os.stat(owner).st_mode & 0o777 == 0o600
    with open(owner) as f:
        assert json.load(f)["seq_limit"] > 0
    # Refusals: another property, replaced context files.
    text = cli("seal", "--context", owner, "code", "1").stdout.strip()
    bad = cli("unseal", "--context", device, "other", text)
    assert bad.returncode == 2 and "not authentic" in bad.stderr and secret not in bad.stderr
    again = cli("new", "--out", keys)
    assert again.returncode != 0 and "exists" in again.stderr
    missing = cli("seal", "--context", str(tmp_path / "nothing.json"), "code", "1")
    assert missing.returncode == 2 and "missing" in missing.stderr


def test_new_print_writes_nothing(tmp_path):
    r = subprocess.run([sys.executable, "-m", "arduino_iot_cloud.sealing", "new", "--print"], cwd=str(tmp_path),
                       env=dict(os.environ, PYTHONPATH=SRC), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    secret = lines[0].split()[1]
    assert lines[0].startswith("master_secret ") and len(secret) == 64
    assert r.stdout.count(secret) == 1 and os.listdir(str(tmp_path)) == []
    other = cli("new", "--print").stdout.splitlines()[0].split()[1]
    assert other != secret


def test_the_local_cloud_shows_a_sealed_value_as_an_opaque_string(tmp_path, capsys):
    # The local cloud's CLI stores and prints the sealed text as it is: a string it cannot read.
    from arduino_iot_cloud import SealingContext
    from arduino_iot_cloud.localcloud import cli as localcloud_cli

    owner = SealingContext(bytes(16), b"owner", b"dev", volatile=True)
    text = owner.seal("code", "4711")
    wd = str(tmp_path / "wd")
    assert localcloud_cli.main(["--workdir", wd, "add-device", "--json", "--property", "code=" + text]) == 0
    device_id = json.loads(capsys.readouterr().out)["device_id"]
    assert localcloud_cli.main(["--workdir", wd, "get", device_id, "code"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == text and "4711" not in shown
    device = SealingContext(bytes(16), b"dev", b"owner", volatile=True)
    assert device.unseal("code", shown) == "4711"
