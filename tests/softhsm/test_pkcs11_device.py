"""A device whose key lives in SoftHSM, against the local cloud's client-certificate listener.

Everything is real: SoftHSM, the OpenSSL pkcs11 engine through M2Crypto,
mosquitto over TLS with the local CA, the cloud emulator.  The device is
examples/pkcs11_device.py in a subprocess; every wait is bounded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
TOKEN = "device"  # the session token's label (conftest.py)

ATTACH_TIMEOUT = 20.0


def _round_trip(cloud, device, proc) -> None:
    """A dashboard write reaches on_write, whose led report reaches the cloud; twice."""
    try:
        cloud.wait_event(device.dev, "last_values", timeout=ATTACH_TIMEOUT)
        for value in (True, False):
            cloud.set(device.dev, "sw1", value)
            assert cloud.wait_for(device.dev, "led", value, timeout=10) == value
    except Exception:
        print(proc.output())
        raise
    assert proc.proc.poll() is None, proc.output()


def test_async_key_and_certificate_in_the_token(hsm_cloud, token, hsm_device, run_device):
    proc = run_device(hsm_device, "--verbose")
    _round_trip(hsm_cloud, hsm_device, proc)
    out = proc.output()
    assert "pkcs11 engine loaded" in out and "DEBUG" in out
    assert token.pin not in out  # not even in debug logs


def test_sync_key_in_the_token_certificate_from_a_file(hsm_cloud, hsm_device, run_device):
    proc = run_device(hsm_device, "--sync", cert=hsm_device.certfile)
    _round_trip(hsm_cloud, hsm_device, proc)


def test_certificate_issued_by_the_local_ca_for_the_token_key(hsm_device):
    # The certificate the cloud issued carries CN = device id and the public
    # key of the token's key pair (what the TLS handshake above proved too).
    from M2Crypto import X509

    cert = X509.load_cert(hsm_device.certfile)
    assert cert.get_subject().CN == hsm_device.device_id


_CHECK_KEY = r"""
import os, sys
import pkcs11
from pkcs11 import Attribute, ObjectClass
lib = pkcs11.lib(sys.argv[1])
with lib.get_token(token_label=sys.argv[2]).open(user_pin=os.environ["PIN"]) as s:
    key = next(s.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: sys.argv[3]}))
    assert key[Attribute.SENSITIVE] is True and key[Attribute.EXTRACTABLE] is False
    assert key[Attribute.NEVER_EXTRACTABLE] is True and key[Attribute.LOCAL] is True
    try:
        key[Attribute.VALUE]
    except pkcs11.exceptions.PKCS11Error:
        print("value refused")
"""


def test_private_key_never_leaves_the_token(token, hsm_device):
    from arduino_iot_cloud.pkcs11 import DEFAULT_MODULE_PATHS

    module = next(p for p in DEFAULT_MODULE_PATHS if os.path.exists(p))
    label = hsm_device.key_uri.split("object=")[1].split(";")[0]
    done = subprocess.run([sys.executable, "-c", _CHECK_KEY, module, TOKEN, label], capture_output=True,
                          text=True, timeout=30, env=dict(os.environ, SOFTHSM2_CONF=token.conf, PIN=token.pin))
    assert done.returncode == 0, done.stderr
    assert "value refused" in done.stdout


# -- errors: each in a fresh process (a PKCS#11 login lasts as long as the process) ---------

def _fails(proc, token, *expected: str) -> str:
    try:
        code = proc.wait(ATTACH_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("the device kept running instead of failing:\n" + proc.output())
    out = proc.output()
    assert code != 0, out
    for text in expected:
        assert text in out, out
    assert token.pin not in out and token.so_pin not in out
    return out


def test_wrong_pin(token, hsm_device, run_device):
    wrong = "59" + token.pin[2:][::-1]
    out = _fails(run_device(hsm_device, pin=wrong), token, "PKCS11Error", "wrong PIN")
    assert wrong not in out


def test_missing_pin_is_an_error_not_a_prompt(token, hsm_device, run_device):
    proc = run_device(hsm_device, pin="")
    _fails(proc, token, "needs ssl_params['pin']")


def test_missing_token(token, hsm_device, run_device):
    key = "pkcs11:token=no-such-token;object=device-key;type=private"
    _fails(run_device(hsm_device, key=key), token, "no private key at pkcs11:token=no-such-token")


def test_missing_key_object(token, hsm_device, run_device):
    key = "pkcs11:token=%s;object=no-such-key;type=private" % TOKEN
    _fails(run_device(hsm_device, key=key), token, "object=no-such-key")


def test_missing_certificate_object(token, hsm_device, run_device):
    cert = "pkcs11:token=%s;object=no-such-cert;type=cert" % TOKEN
    _fails(run_device(hsm_device, cert=cert), token, "no certificate at " + cert)


def test_pin_in_the_uri_is_not_shown(token, hsm_device, run_device):
    key = "pkcs11:token=no-such-token;object=device-key;type=private;pin-value=%s" % token.pin
    out = _fails(run_device(hsm_device, key=key), token, "no private key at pkcs11:token=no-such-token")
    assert "pin-value" not in out


def test_certificate_of_another_key(hsm_cloud, token, hsm_device, run_device):
    other = hsm_cloud.add_device(auth="cert")  # a software key: its certificate cannot match
    _fails(run_device(hsm_device, cert=other.certfile), token, "does not match the private key")


def test_missing_module(token, hsm_device, run_device):
    proc = run_device(hsm_device, "--module", "/nonexistent/libnothing.so")
    _fails(proc, token, "PKCS#11 module not found: /nonexistent/libnothing.so")


_WRAP = r"""
import socket, sys
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "no-m2crypto":
    sys.modules["M2Crypto"] = None  # import M2Crypto now raises ImportError
from arduino_iot_cloud.errors import ConfigError
from arduino_iot_cloud.tls import TLSConfig
params = {"keyfile": "pkcs11:token=t;object=k;type=private", "certfile": "/nonexistent.pem", "pin": "1234"}
if sys.argv[2] != "no-m2crypto":
    params[sys.argv[2]] = sys.argv[3]
a, b = socket.socketpair()
try:
    TLSConfig(params).wrap(a, "localhost")
except ConfigError as e:
    print("%s[%s]: %s" % (type(e).__name__, getattr(e, "reason", ""), e))
"""


def test_missing_engine():
    done = subprocess.run([sys.executable, "-c", _WRAP, str(SRC), "engine_path", "/nonexistent/pkcs11.so"],
                          capture_output=True, text=True, timeout=30)
    assert "PKCS11Error[engine]: OpenSSL pkcs11 engine not found: /nonexistent/pkcs11.so" in done.stdout, \
        done.stdout + done.stderr


def test_reconnects_after_the_broker_restarts(hsm_cloud, hsm_device, run_device):
    # A second handshake with the token key, in the same process (engine cached).
    proc = run_device(hsm_device)
    _round_trip(hsm_cloud, hsm_device, proc)
    mark = hsm_cloud.mark(hsm_device.dev)
    hsm_cloud.restart_broker()
    try:
        hsm_cloud.wait_event(hsm_device.dev, "last_values", since=mark, timeout=ATTACH_TIMEOUT)
        hsm_cloud.set(hsm_device.dev, "sw1", True)
        assert hsm_cloud.wait_for(hsm_device.dev, "led", True, timeout=10) is True
    except Exception:
        print(proc.output())
        raise


def test_provision_script_with_the_localcloud_cli(hsm_cloud, tmp_path):
    # The README flow: softhsm/provision.sh makes the token, the key and the
    # CSR, registers the device through the local cloud's CLI, and prints
    # the exports the example needs.
    script = Path(__file__).resolve().parents[2] / "softhsm" / "provision.sh"
    example = Path(__file__).resolve().parents[2] / "examples" / "pkcs11_device.py"
    pin, so_pin = "2468013579", "1357924680"
    env = dict(os.environ, SOFTHSM_PIN=pin, SOFTHSM_SO_PIN=so_pin, PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run(["bash", str(script), str(tmp_path / "token"), str(hsm_cloud.workdir)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert pin not in done.stdout + done.stderr and so_pin not in done.stdout + done.stderr
    exports = dict(line[len("export "):].split("=", 1) for line in done.stdout.splitlines()
                   if line.startswith("export "))
    device_id = exports["DEVICE_ID"]
    assert "SOFTHSM2_CONF" in exports and "ARDUINO_IOT_CLOUD_PORT" in exports
    log = open(tmp_path / "device.log", "wb")
    proc = subprocess.Popen([sys.executable, str(example)], env=dict(env, PKCS11_PIN=pin, **exports),
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        hsm_cloud.wait_event(device_id, "last_values", timeout=ATTACH_TIMEOUT)
        hsm_cloud.set(device_id, "sw1", True)
        assert hsm_cloud.wait_for(device_id, "led", True, timeout=10) is True
    except Exception:
        print((tmp_path / "device.log").read_text())
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


_SCRIPT_141 = r"""
import logging, os, ssl, sys
from arduino_iot_cloud import ArduinoCloudClient

def on_switch_changed(client, value):
    client["led"] = value

logging.basicConfig(level=logging.INFO)
client = ArduinoCloudClient(
    device_id=os.environ["DEVICE_ID"],
    ssl_params={
        "use_hsm": True, "pin": os.environ["PKCS11_PIN"],
        "keyfile": "pkcs11:token=arduino", "certfile": "pkcs11:token=arduino",
        "module_path": os.environ["PKCS11_MODULE"],
        "cafile": os.environ["CA_PATH"], "verify_mode": ssl.CERT_REQUIRED, "server_hostname": "localhost",
    },
)
client.register("sw1", value=None, on_write=on_switch_changed)
client.register("led", value=None)
client.start()
"""


def test_141_style_ssl_params_with_token_only_uris(hsm_cloud, token, tmp_path):
    # 1.4.1's own CI put one key and one certificate in a token "arduino" and
    # named both "pkcs11:token=arduino"; such a script runs unchanged.
    from arduino_iot_cloud.pkcs11 import DEFAULT_MODULE_PATHS

    device_id = str(uuid.uuid4())
    csr = tmp_path / "arduino.csr"
    token.run("init", "--token", "arduino")
    token.run("csr", "--token", "arduino", "--key", "mykey", "--device-id", device_id, "--out", str(csr))
    dev = hsm_cloud.add_device(auth="cert", csr=str(csr), device_id=device_id)
    token.run("import-cert", "--token", "arduino", "--key", "mykey", "--cert", dev.certfile)
    env = dict(os.environ, **hsm_cloud.env(dev), SOFTHSM2_CONF=token.conf, PKCS11_PIN=token.pin,
               DEVICE_ID=device_id, CA_PATH=hsm_cloud.ca_file,
               PKCS11_MODULE=next(p for p in DEFAULT_MODULE_PATHS if os.path.exists(p)),
               PYTHONPATH=os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p))
    del env["ARDUINO_IOT_CLOUD_CA"]  # the script names its CA itself
    log_path = tmp_path / "device.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", _SCRIPT_141], env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            hsm_cloud.wait_event(dev, "last_values", timeout=ATTACH_TIMEOUT)
            hsm_cloud.set(dev, "sw1", True)
            assert hsm_cloud.wait_for(dev, "led", True, timeout=10) is True
        except Exception:
            print(log_path.read_text())
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    assert token.pin not in log_path.read_text()


def test_missing_m2crypto():
    done = subprocess.run([sys.executable, "-c", _WRAP, str(SRC), "no-m2crypto", ""],
                          capture_output=True, text=True, timeout=30)
    assert "PKCS11Error[m2crypto]: PKCS#11 keys need M2Crypto (pip install M2Crypto)" in done.stdout, \
        done.stdout + done.stderr
