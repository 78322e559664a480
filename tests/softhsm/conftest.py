"""Fixtures for keys that live in a SoftHSM token.

One token per test session, in a temporary directory with its own
SOFTHSM2_CONF (the system's SoftHSM configuration is never used).  Each
device gets its own EC key generated inside that token by
softhsm/provision.py, a certificate from the local cloud's CA for a CSR the
token signed, and that certificate stored back in the token.

Devices run as subprocesses (examples/pkcs11_device.py): a PKCS#11 login
lasts as long as the process, so a wrong-PIN test needs a fresh process,
and SoftHSM reads SOFTHSM2_CONF once per process.

The tests skip only when SoftHSM, the OpenSSL pkcs11 engine, M2Crypto,
python-pkcs11 or mosquitto are missing; with CI set in the environment
they fail instead, since CI installs all of them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PROVISION = ROOT / "softhsm" / "provision.py"
EXAMPLE = ROOT / "examples" / "pkcs11_device.py"
TOKEN = "device"

if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


def missing_parts() -> Optional[str]:
    from arduino_iot_cloud.pkcs11 import DEFAULT_ENGINE_PATHS, DEFAULT_MODULE_PATHS

    if shutil.which("softhsm2-util") is None:
        return "softhsm2-util not found (apt install softhsm2)"
    if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
        return "mosquitto not found (apt install mosquitto)"
    if not any(os.path.exists(p) for p in DEFAULT_ENGINE_PATHS):
        return "OpenSSL pkcs11 engine not found (apt install libengine-pkcs11-openssl)"
    if not any(os.path.exists(p) for p in DEFAULT_MODULE_PATHS):
        return "SoftHSM module not found (apt install softhsm2)"
    for module, hint in (("M2Crypto", "pip install M2Crypto"), ("pkcs11", "pip install python-pkcs11")):
        try:
            __import__(module)
        except ImportError:
            return "%s not importable (%s)" % (module, hint)
    return None


@pytest.fixture(scope="session", autouse=True)
def _hsm_parts() -> None:
    reason = missing_parts()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide the SoftHSM test parts: " + reason)
        pytest.skip(reason)


class Token:
    """The session's SoftHSM token: its directory, config and PINs."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.conf = str(workdir / "softhsm2.conf")
        # Distinctive values, so that a test can prove they never show up in output.
        self.pin = "71" + "".join(secrets.choice("0123456789") for _ in range(8))
        self.so_pin = "93" + "".join(secrets.choice("0123456789") for _ in range(8))

    def run(self, *args: str) -> str:
        env = dict(os.environ, SOFTHSM_PIN=self.pin, SOFTHSM_SO_PIN=self.so_pin)
        done = subprocess.run([sys.executable, str(PROVISION), *args, "--dir", str(self.workdir)],
                              env=env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise AssertionError("provision.py %s failed: %s" % (args[0], done.stderr))
        return done.stdout


@pytest.fixture(scope="session")
def token(tmp_path_factory) -> Token:
    tok = Token(tmp_path_factory.mktemp("softhsm"))
    tok.run("init", "--token", TOKEN)
    return tok


@pytest.fixture(scope="session")
def hsm_cloud(tmp_path_factory):
    from arduino_iot_cloud.localcloud import LocalCloud

    cloud = LocalCloud(tmp_path_factory.mktemp("hsm-localcloud"))
    cloud.start()
    yield cloud
    cloud.stop()


class HsmDevice:
    """A cloud device whose key was generated in the token."""

    def __init__(self, dev, key_label: str, certfile: str) -> None:
        self.dev = dev
        self.device_id = dev.device_id
        self.key_uri = "pkcs11:token=%s;object=%s;type=private" % (TOKEN, key_label)
        self.cert_uri = "pkcs11:token=%s;object=%s;type=cert" % (TOKEN, key_label)
        self.certfile = certfile


@pytest.fixture
def hsm_device(token, hsm_cloud, tmp_path) -> HsmDevice:
    device_id = str(uuid.uuid4())
    label = "key-" + device_id[:8]
    csr = tmp_path / "device.csr"
    token.run("csr", "--token", TOKEN, "--key", label, "--device-id", device_id, "--out", str(csr))
    dev = hsm_cloud.add_device(auth="cert", csr=str(csr), device_id=device_id)
    token.run("import-cert", "--token", TOKEN, "--key", label, "--cert", dev.certfile)
    return HsmDevice(dev, label, dev.certfile)


class DeviceProcess:
    """examples/pkcs11_device.py running in a subprocess, output in a file."""

    def __init__(self, args: List[str], env: Dict[str, str], log: Path) -> None:
        self.log = log
        self._out = open(log, "wb")
        self.proc = subprocess.Popen([sys.executable, str(EXAMPLE), *args], env=env,
                                     stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()


@pytest.fixture
def run_device(token, hsm_cloud, tmp_path) -> Iterator:
    """run_device(hsm_device, *args, pin=...) -> DeviceProcess (stopped at teardown)."""
    started: List[DeviceProcess] = []

    def start(device: HsmDevice, *args: str, pin: Optional[str] = None, key: Optional[str] = None,
              cert: Optional[str] = None) -> DeviceProcess:
        env = dict(os.environ)
        env.update(hsm_cloud.env(device.dev))
        env.update({
            "SOFTHSM2_CONF": token.conf,
            "PKCS11_PIN": token.pin if pin is None else pin,
            "DEVICE_ID": device.device_id,
            "PKCS11_KEY_URI": key or device.key_uri,
            "PKCS11_CERT": cert or device.cert_uri,
            "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p),
        })
        proc = DeviceProcess(list(args), env, tmp_path / ("device-%d.log" % len(started)))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
