"""Fixtures of the OTA tests: a time limit, an HTTPS file server with a certificate
from the local cloud's CA, a c/up watcher, and supervised device runs (CPython or
the MicroPython unix port) of examples/ota_device.py."""

import os
import shutil
import sys

import pytest

from otatools import LAUNCHER, ROOT_DIR, HttpsFileServer, Supervisor, UpWatcher

SRC = os.path.join(ROOT_DIR, "src")


@pytest.fixture
def time_limit():
    return 150


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for name in ("ARDUINO_IOT_CLOUD_SERVER", "ARDUINO_IOT_CLOUD_PORT", "ARDUINO_IOT_CLOUD_CA"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def file_server(local_cloud, tmp_path):
    files = tmp_path / "served"
    files.mkdir()
    server = HttpsFileServer(str(files), str(local_cloud.pki.server_cert), str(local_cloud.pki.server_key))
    server.dir = files
    yield server
    server.stop()


@pytest.fixture
def watch(local_cloud):
    made = []

    def make(dev):
        w = UpWatcher(local_cloud, dev.device_id)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()


@pytest.fixture
def device_run(local_cloud, tmp_path):
    """run(dev, root, runtime="cpython"|"micropython", sync=False, **env) -> a Supervisor
    of the launcher; the MicroPython unix port's exit status 0 (its restart) starts it again."""
    runs = []

    def run(dev, root, runtime="cpython", sync=False, restart_on=None, preexec=None, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARDUINO_IOT_CLOUD_")}
        env.update(local_cloud.env(dev))
        env.update({"DEVICE_ID": dev.device_id, "SECRET_KEY": dev.secret, "OTA_ROOT": str(root),
                    "SYNC": "1" if sync else "0", "PYTHONUNBUFFERED": "1", "OTA_RETRY_MS": "200",
                    "OTA_RETRIES": "3"})
        env.update({k: str(v) for k, v in extra.items()})
        if runtime == "micropython":
            if shutil.which("micropython") is None:
                pytest.skip("micropython is not installed")
            env["MICROPYPATH"] = SRC + ":.frozen"
            argv = ["micropython", LAUNCHER]
        else:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
            argv = [sys.executable, LAUNCHER]
        sup = Supervisor(argv, env, str(tmp_path / ("device-%d.log" % len(runs))), restart_on=restart_on,
                         cwd=ROOT_DIR, preexec=preexec)
        runs.append(sup)
        return sup

    yield run
    for sup in runs:
        sup.stop()
        # Shown by pytest when the test fails.
        print("---- %s (starts %d, exits %s) ----\n%s" % (sup.log_path, sup.starts, sup.exits, sup.output()[-4000:]))
