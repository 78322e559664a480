"""`.ci/setup` (= `make setup`): one line per step it takes, nothing when all is in place."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def time_limit():
    return 900


def run_setup():
    return subprocess.run(["bash", str(ROOT / ".ci" / "setup")], capture_output=True, text=True, timeout=850)


def test_setup_is_quiet_when_everything_is_there():
    first = run_setup()
    assert first.returncode == 0, first.stdout + first.stderr
    for line in first.stdout.splitlines():
        assert line.startswith("setup: "), line      # a step says what it does, and nothing else is printed
    again = run_setup()
    assert again.returncode == 0
    assert again.stdout == "" and again.stderr == "", again.stdout + again.stderr


def test_install_check_knows_another_checkout(tmp_path):
    # The check that keeps setup quiet must not be fooled by an install of another folder.
    shutil.copytree(ROOT / ".ci", tmp_path / ".ci")
    here = subprocess.run([sys.executable, str(ROOT / ".ci" / "installed.py"), "test"])
    elsewhere = subprocess.run([sys.executable, str(tmp_path / ".ci" / "installed.py"), "test"])
    assert here.returncode == 0
    assert elsewhere.returncode == 1
