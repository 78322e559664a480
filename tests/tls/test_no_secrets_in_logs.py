"""No secret in any log line: an end-to-end run against the local cloud with
every logger at DEBUG (library, local cloud, paho) and the broker's own log,
covering login, values both ways, a broker restart with reconnect, a refused
login with a wrong password, a certificate device, and a PKCS#11 PIN.  The
device secret, the wrong password, the PIN and the private key's base64 body
must appear nowhere: not in log records, not in tracebacks logged with them,
not in engine.last_error, not in the mosquitto log."""

import logging
import time

import pytest

from arduino_iot_cloud import ArduinoCloudClient

pytestmark = pytest.mark.e2e

WRONG_PASSWORD = "Wrong-Passw0rd-4f1c2a9e77"
PIN = "PIN-735194-never-log"


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))  # format() includes any traceback


@pytest.fixture
def all_logs():
    root = logging.getLogger()
    handler = Collect()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # Loggers that set their own level would hide records: open them all.
    opened = []
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level not in (logging.NOTSET, logging.DEBUG):
            opened.append((logger, logger.level))
            logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)
        for logger, level in opened:
            logger.setLevel(level)


def run_until(client, pred, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        client.update()
        if pred():
            return True
        time.sleep(0.01)
    return False


def key_body(path):
    # The base64 lines of a PEM private key, each long enough to be unmistakable.
    with open(path) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("-----") and len(line) > 16]


def test_no_secret_in_any_log(local_cloud, all_logs, monkeypatch):
    cloud = local_cloud
    for name, value in (("ARDUINO_IOT_CLOUD_SERVER", cloud.host), ("ARDUINO_IOT_CLOUD_CA", cloud.ca_file)):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ARDUINO_IOT_CLOUD_PORT", str(cloud.password_port))
    errors = []

    # 1. A password device: login, values both ways, broker restart, reconnect.
    dev = cloud.add_device(auth="password")
    seen = []
    c = ArduinoCloudClient(dev.device_id, password=dev.secret, sync_mode=True, keepalive=2, reconnect_cap=2)
    c.register("temp", value=1.5)
    c.register("sw", value=False, on_write=lambda cl, v: seen.append(v))
    assert run_until(c, lambda: c.connected, 15)
    cloud.wait_for(dev, "temp", 1.5, timeout=10)
    cloud.set(dev, "sw", True)
    assert run_until(c, lambda: True in seen, 10)
    attaches = c.session.attach_count
    cloud.restart_broker()
    assert run_until(c, lambda: c.session.attach_count > attaches and c.connected, 20)
    errors.append(c.engine.last_error)
    c.stop()

    # 2. The same device with a wrong password: refused, logged, retried.
    bad = ArduinoCloudClient(dev.device_id, password=WRONG_PASSWORD, sync_mode=True, keepalive=2,
                             reconnect_cap=1)
    assert run_until(bad, lambda: bad.engine.last_error is not None, 10)
    errors.append(bad.engine.last_error)
    bad.stop()

    # 3. A certificate device.
    monkeypatch.setenv("ARDUINO_IOT_CLOUD_PORT", str(cloud.cert_port))
    cdev = cloud.add_device(auth="cert")
    cc = ArduinoCloudClient(cdev.device_id, ssl_params={"keyfile": cdev.keyfile, "certfile": cdev.certfile},
                            sync_mode=True, keepalive=2)
    cc.register("temp", value=2.5)
    assert run_until(cc, lambda: cc.connected, 15)
    cloud.wait_for(cdev, "temp", 2.5, timeout=10)
    cc.stop()

    # 4. A PKCS#11 key with a PIN (the token does not exist: the attempt fails).
    pc = ArduinoCloudClient(cdev.device_id, ssl_params={
        "keyfile": "pkcs11:token=nosuchtoken;object=nokey", "certfile": cdev.certfile, "pin": PIN,
        "module_path": "/nonexistent/libsofthsm2.so"}, sync_mode=True, keepalive=2)
    try:
        run_until(pc, lambda: pc.engine.last_error is not None, 10)
    except Exception as e:  # noqa: BLE001 - a configuration error may surface; it must not carry the PIN
        logging.getLogger("test").error("PKCS#11 attempt raised %r", e, exc_info=True)
        errors.append(e)
    errors.append(pc.engine.last_error)
    logging.getLogger("test").debug("tls config: %r", pc.engine.tls)
    pc.stop()

    secrets = {"device secret": dev.secret, "wrong password": WRONG_PASSWORD, "PIN": PIN}
    for i, line in enumerate(key_body(cdev.keyfile)):
        secrets["private key line %d" % i] = line
    texts = list(all_logs.lines)
    texts += ["last_error: %r %s" % (e, e) for e in errors if e is not None]
    with open(cloud.broker.log_file, errors="replace") as f:
        texts.append(f.read())
    assert len(all_logs.lines) > 20, "too few log lines captured: the scan would prove nothing"
    assert any(dev.device_id in t for t in texts), "device id never logged: is the capture working?"
    assert any("connection refused by broker" in t for t in all_logs.lines), "the refused login was not logged"
    leaks = [(what, t[:200]) for what, s in secrets.items() for t in texts if s in t]
    assert not leaks, leaks
