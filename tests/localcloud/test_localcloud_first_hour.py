"""What a new user meets first: the CLI finds the cloud from any folder (or says where it
looked), `demo` keeps one demo device and says what to try next, and `env` prints lines
that run as printed, on CPython and on the MicroPython unix port."""

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

from arduino_iot_cloud.localcloud import cli

pytestmark = pytest.mark.e2e

SRC = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "src"))


@pytest.fixture
def time_limit():
    return 90


@pytest.fixture
def user_env(tmp_path, monkeypatch):
    """A user with no cloud anywhere: own runtime dir, no ARDUINO_LOCALCLOUD_DIR."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("ARDUINO_LOCALCLOUD_DIR", raising=False)
    return runtime


def test_a_command_without_a_cloud_says_where_it_looked(tmp_path, user_env, monkeypatch, capsys):
    folder = tmp_path / "somewhere" / "deep"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    for argv in (["get", "abc"], ["list"], ["set", "abc", "x", "1"], ["env", "abc"]):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert "no local cloud found" in err and str(folder) in err and "--workdir" in err
    assert not any(p.name == ".localcloud" for p in tmp_path.rglob("*"))   # nothing created by accident


def test_a_cloud_in_a_parent_folder_is_found(tmp_path, user_env, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["add-device", "--json", "--property", "t=5"]) == 0
    dev_id = __import__("json").loads(capsys.readouterr().out)["device_id"]
    sub = tmp_path / "project" / "src"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert cli.main(["get", dev_id, "t"]) == 0
    assert capsys.readouterr().out.strip() == "5"


def start_cli(argv, cwd, env):
    proc = subprocess.Popen([sys.executable, "-m", "arduino_iot_cloud.localcloud", *argv], cwd=str(cwd), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C" in line:
            return proc, lines
    proc.wait(10)
    raise AssertionError("no banner: " + "".join(lines))


def stop_cli(proc):
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()


def test_demo_keeps_its_device_and_prints_what_to_try(tmp_path, user_env):
    env = dict(os.environ, XDG_RUNTIME_DIR=str(user_env))
    home = tmp_path / "demo-home"
    home.mkdir()
    ids = []
    for _ in range(2):
        proc, banner = start_cli(["demo"], home, env)
        try:
            text = "".join(banner)
            dev_line = next(line for line in banner if line.startswith("demo device "))
            ids.append(dev_line.split()[2].rstrip(":"))
            assert "watch %s" % ids[-1][:8] in text and "set %s sw1 true" % ids[-1][:8] in text
            # From another folder, with no --workdir: the running demo is found.
            other = tmp_path / "elsewhere"
            other.mkdir(exist_ok=True)
            run = subprocess.run([sys.executable, "-m", "arduino_iot_cloud.localcloud", "list"], cwd=str(other),
                                 env=env, capture_output=True, text=True, timeout=30)
            assert run.returncode == 0 and ids[-1] in run.stdout, run.stdout + run.stderr
        finally:
            stop_cli(proc)
    assert ids[0] == ids[1]
    run = subprocess.run([sys.executable, "-m", "arduino_iot_cloud.localcloud", "list", "--json"], cwd=str(home),
                         env=env, capture_output=True, text=True, timeout=30)
    assert len(__import__("json").loads(run.stdout)) == 1
    assert oct((home / ".localcloud" / "demo.json").stat().st_mode & 0o777) == "0o600"


STOPPER = '''
import asyncio
async def stopper():
    while not client.connected:
        await asyncio.sleep(0.05)
    print("ATTACHED", client.thing_id)
    client.stop()
client.register("temp", value=21)
client.create_task("stopper", stopper)
client.start()
'''


def env_output(cloud, dev, capsys):
    assert cli.main(["--workdir", str(cloud.workdir), "env", dev.device_id]) == 0
    return capsys.readouterr().out


def exports_and_snippet(out, secret=None):
    env = {}
    for line in out.splitlines():
        if line.startswith("export "):
            for part in shlex.split(line[len("export "):]):
                key, _, value = part.partition("=")
                env[key] = value
    if secret is not None:
        env["SECRET_KEY"] = secret
    lines = out.splitlines()
    start = lines.index(cli.ENV_SNIPPET_HEAD) + 1
    snippet = [line[4:] for line in lines[start:] if line.startswith("#   ")]
    return env, "\n".join(snippet) + "\n" + STOPPER


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
@pytest.mark.parametrize("auth", ["password", "cert"])
def test_env_prints_lines_that_run_as_printed(local_cloud, device_factory, capsys, tmp_path, auth, runtime):
    dev = device_factory(auth=auth)
    out = env_output(local_cloud, dev, capsys)
    assert "wants DER" not in out and "None" not in out
    env, code = exports_and_snippet(out, dev.secret if auth == "password" else None)
    script = tmp_path / "device.py"
    script.write_text(code)
    if runtime == "cpython":
        cmd = [sys.executable, str(script)]
        full = dict(os.environ, **env)
    else:
        if shutil.which("micropython") is None:
            pytest.skip("micropython is not installed")
        cmd = ["micropython", str(script)]
        full = dict(env, PATH=os.environ["PATH"], MICROPYPATH="%s:.frozen" % SRC)
    run = subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "ATTACHED %s" % dev.thing_id in run.stdout, run.stdout + run.stderr
    local_cloud.wait_for(dev, "temp", 21, timeout=10)
