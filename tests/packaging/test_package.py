"""The package as a user gets it: the sdist and the wheel built by `python -m build`,
installed without extras into a fresh virtualenv."""

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def time_limit():
    return 300


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    run = subprocess.run([sys.executable, "-m", "build", "-o", str(out), str(ROOT)],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    log = run.stdout + run.stderr
    return out, log


def test_build_gives_no_deprecation_warning(dist):
    _, log = dist
    for word in ("SetuptoolsDeprecationWarning", "License classifiers are deprecated", "project.license` as a TOML table"):
        assert word not in log


def test_wheel_carries_licence_and_type_marker(dist):
    out, _ = dist
    (wheel,) = out.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "arduino_iot_cloud/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MPL-2.0" in meta
    assert "Classifier: Typing :: Typed" in meta


def test_sdist_carries_tests_and_examples(dist):
    out, _ = dist
    (sdist,) = out.glob("*.tar.gz")
    names = tarfile.open(sdist).getnames()
    top = names[0].split("/")[0]
    for path in ("LICENSE", "tests/conftest.py", "examples/basic.py", "Makefile", "package.json"):
        assert "%s/%s" % (top, path) in names, path


def test_cli_without_the_extra_names_it(dist, tmp_path):
    out, _ = dist
    (wheel,) = out.glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
                   check=True, timeout=240, env=env)
    # The device library imports without paho ...
    subprocess.run([str(py), "-c", "import arduino_iot_cloud"], check=True, env=env, cwd=str(tmp_path))
    # ... and the local cloud's command says which extra to install, in one line.
    run = subprocess.run([str(venv / "bin" / "arduino-localcloud"), "--help"], capture_output=True, text=True,
                         env=env, cwd=str(tmp_path), timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0, run.stderr
    assert "pip install 'arduino-iot-cloud[localcloud]'" in run.stderr
    run = subprocess.run([str(py), "-m", "arduino_iot_cloud.localcloud", "--help"], capture_output=True,
                         text=True, env=env, cwd=str(tmp_path), timeout=60)
    assert run.returncode != 0
    assert "arduino-iot-cloud[localcloud]" in run.stderr.splitlines()[-1]
