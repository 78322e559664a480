"""Hashing device secrets leaves no readable copy for another local user (issue 12, item 4).

``mosquitto_passwd -U FILE`` writes a cleartext backup, ``FILE.tmp`` (mode 0666 & umask,
no O_EXCL), for the time of the call.  Another user ("nobody") watches the temporary
directory while secrets are hashed, reading every file it can: it must find none.
"""

import json
import os
import secrets
import stat
import subprocess
import sys
import tempfile

import pytest

from arduino_iot_cloud.localcloud import broker

pytestmark = pytest.mark.e2e

# Runs as "nobody": reads every file it can under ROOT until STOP exists; prints what held MARKER.
WATCHER = r"""
import json, os, sys
root, marker, stop = sys.argv[1], sys.argv[2].encode(), sys.argv[3]
found, scans = set(), 0
while not os.path.exists(stop):
    for dirpath, _, names in os.walk(root):  # directories it may not enter are skipped
        for name in names:
            path = os.path.join(dirpath, name)
            try:
                with open(path, "rb") as f:
                    if marker in f.read():
                        found.add(path)
            except OSError:
                pass
    scans += 1
print(json.dumps({"found": sorted(found), "scans": scans}))
"""
AS_NOBODY = dict(user="nobody", group="nogroup", extra_groups=[])


def other_python():
    """A Python that user "nobody" may run (ours may sit in root's home)."""
    for exe in (sys.executable, "/usr/bin/python3"):
        try:
            subprocess.run([exe, "-c", ""], check=True, capture_output=True, **AS_NOBODY)
        except (OSError, subprocess.CalledProcessError):
            continue
        return exe
    pytest.skip("no Python that user nobody can run")


@pytest.fixture
def shared_tmp(monkeypatch):
    """A world-writable sticky directory like /tmp, used as the system temp directory."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the watcher as another user")
    path = tempfile.mkdtemp(prefix="lc-shared-", dir="/tmp")
    os.chmod(path, 0o1777)
    monkeypatch.setattr(tempfile, "tempdir", path)
    yield path
    subprocess.run(["rm", "-rf", path], check=False)


def test_no_other_user_can_read_a_secret_while_it_is_hashed(shared_tmp):
    marker = "Zq" + secrets.token_hex(8)
    stop = os.path.join(shared_tmp, "stop-" + secrets.token_hex(4))
    # a file the watcher must find: proof that it runs and reads
    control = os.path.join(shared_tmp, "control")
    with open(control, "w") as f:
        f.write(marker)
    os.chmod(control, 0o644)
    watcher = subprocess.Popen([other_python(), "-c", WATCHER, shared_tmp, marker, stop],
                               stdout=subprocess.PIPE, text=True, **AS_NOBODY)
    try:
        for call in range(15):
            lines = broker.hash_passwords(("dev-%d-%d" % (call, i), "%s%06d" % (marker, i)) for i in range(300))
            assert lines.count("\n") == 300 and marker not in lines
    finally:
        open(stop, "w").close()
        out, _ = watcher.communicate(timeout=30)
    report = json.loads(out)
    assert report["scans"] > 15, report
    assert report["found"] == [control], report
    # nothing is left behind either
    assert sorted(os.listdir(shared_tmp)) == sorted(["control", os.path.basename(stop)])


def test_every_file_the_tool_writes_stays_in_a_private_directory(shared_tmp, monkeypatch):
    """Where and with which mode each file appears, seen from a stand-in for mosquitto_passwd."""
    seen = []
    real = subprocess.run

    def run(cmd, *args, **kw):
        if cmd[0].endswith("mosquitto_passwd"):
            target = cmd[-1]
            parent = os.path.dirname(target)
            seen.append((stat.S_IMODE(os.stat(parent).st_mode), stat.S_IMODE(os.stat(target).st_mode),
                         kw.get("umask")))
        return real(cmd, *args, **kw)

    monkeypatch.setattr(broker.subprocess, "run", run)
    broker.hash_passwords([("dev", "secret")])
    assert seen == [(0o700, 0o600, 0o077)]
    assert os.listdir(shared_tmp) == []


def test_bad_entries_are_refused_before_any_file_is_written(shared_tmp):
    for user, password in (("a:b", "x"), ("a", "x\ny"), ("a\r", "x")):
        with pytest.raises(ValueError) as err:
            broker.hash_passwords([(user, password)])
        assert password not in str(err.value)
    assert os.listdir(shared_tmp) == []
