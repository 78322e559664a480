"""The README's offline install route: `python tools/mip_install.py DIR` runs MicroPython's own
mip against this checkout (served on 127.0.0.1), and the library it leaves in DIR runs a device."""

import json
import os
import subprocess
import sys

import pytest

from mpy_helpers import EXAMPLE, ROOT, mpy_env


def installed_files(target):
    found = set()
    for base, _dirs, files in os.walk(target):
        for name in files:
            found.add(os.path.relpath(os.path.join(base, name), target))
    return found


@pytest.mark.e2e
def test_offline_mip_install_gives_a_working_device(mpy, mpy_procs, local_cloud, device_factory, tmp_path):
    target = tmp_path / "lib"
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "mip_install.py"), str(target)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    with open(os.path.join(ROOT, "package.json")) as f:
        listed = {dest for dest, _src in json.load(f)["urls"]}
    assert installed_files(str(target)) == listed

    # The example runs from the installed copy alone (no src/ on the path).
    dev = device_factory(auth="password")
    env = mpy_env(str(target), **dict(local_cloud.env(dev), DEVICE_ID=dev.device_id, SECRET_KEY=dev.secret,
                                      RUN_SECONDS=30))
    proc = mpy_procs([EXAMPLE], env)
    proc.wait_line("attached 1 %s" % dev.thing_id, 20)
    local_cloud.wait_for(dev, "uptime", lambda v: isinstance(v, int) and v >= 1, timeout=20)
    assert "Traceback" not in proc.output()
