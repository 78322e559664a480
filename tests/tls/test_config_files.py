"""A CA, key or certificate file that is missing or not what it should be is a
configuration mistake: ConfigError naming the file and what is wrong, raised when
the client is built (before any connect), on both transports and both runtimes.
Retrying cannot fix it, so it must never turn into a reconnect loop."""

import os
import shutil
import subprocess

import pytest

from arduino_iot_cloud import ArduinoCloudClient, ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", "..", "src"))
DEVICE = "0f6b8a2e-1c3d-4e5f-8a9b-configfile01"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    import tlsenv

    pki = tlsenv.make_pki(tmp_path_factory.mktemp("cfgpki"))
    junk = tmp_path_factory.mktemp("junk") / "notes.txt"
    junk.write_text("this is not a certificate\n")
    pki.junk = str(junk)
    return pki


def cases(pki):
    """(name, cafile, keyfile, certfile, words the error must hold)"""
    ca, key, cert = pki.path("good-ca", "pem"), pki.path("client-ok", "key"), pki.path("client-ok", "pem")
    other_key = pki.path("client-rogue", "key")
    return [
        ("missing CA", "/nope/ca.pem", None, None, ["/nope/ca.pem", "cannot read"]),
        ("CA is a key", key, None, None, [key, "PRIVATE KEY", "not a CERTIFICATE"]),
        ("CA is junk", pki.junk, None, None, [pki.junk, "neither PEM nor DER"]),
        ("missing key", ca, "/nope/key.pem", cert, ["/nope/key.pem", "cannot read key"]),
        ("key is a certificate", ca, cert, cert, [cert, "not a PRIVATE KEY"]),
        ("certificate is a key", ca, key, key, [key, "not a CERTIFICATE"]),
        ("key of another certificate", ca, other_key, cert, [other_key, cert, "does not belong"]),
    ]


CASE_NAMES = ["missing CA", "CA is a key", "CA is junk", "missing key", "key is a certificate",
              "certificate is a key", "key of another certificate"]


def build(transport, cafile, keyfile, certfile):
    params = {"cafile": cafile}
    kw = {"password": "Secret-0042"}
    if keyfile:
        params.update(keyfile=keyfile, certfile=certfile)
        kw = {}
    return ArduinoCloudClient(DEVICE, server="127.0.0.1", port=1, ssl_params=params, sync_mode=True,
                              transport=transport, **kw)


@pytest.mark.parametrize("transport", ["socket", "paho"])
@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_file_is_a_config_error_naming_it(pki, clean_env, name, transport):
    if transport == "paho":
        pytest.importorskip("paho.mqtt")
    _, cafile, keyfile, certfile, words = next(c for c in cases(pki) if c[0] == name)
    with pytest.raises(ConfigError) as info:
        build(transport, cafile, keyfile, certfile)
    for word in words:
        assert word in str(info.value), str(info.value)
    assert "Secret-0042" not in str(info.value)


def test_good_files_build_a_client(pki, clean_env):
    for transport in ("socket", "paho"):
        build(transport, pki.path("good-ca", "pem"), pki.path("client-ok", "key"), pki.path("client-ok", "pem"))
        build(transport, pki.path("good-ca", "pem"), None, None)


def test_ca_from_the_environment_is_named(clean_env, monkeypatch):
    monkeypatch.setenv("ARDUINO_IOT_CLOUD_CA", "/nope.pem")
    with pytest.raises(ConfigError) as info:
        ArduinoCloudClient(DEVICE, password="Secret-0042", sync_mode=True)
    assert "/nope.pem" in str(info.value) and "ARDUINO_IOT_CLOUD_CA" in str(info.value)


# mbedTLS does not compare a key with its certificate when they are loaded, so on
# MicroPython a key of another certificate is only found by the broker, in the handshake.
@pytest.mark.parametrize("name", [n for n in CASE_NAMES if n != "key of another certificate"])
def test_bad_file_on_micropython(pki, name):
    exe = shutil.which("micropython")
    if exe is None:
        pytest.skip("micropython (unix port) is not installed")
    _, cafile, keyfile, certfile, words = next(c for c in cases(pki) if c[0] == name)
    args = [exe, os.path.join(HERE, "mpy_config_client.py"), cafile]
    if keyfile:
        args += [keyfile, certfile]
    env = {"MICROPYPATH": "%s:%s:.frozen" % (SRC, HERE), "PATH": os.environ.get("PATH", "")}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30, env=env)
    results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and results, (proc.stdout[-1000:], proc.stderr[-2000:])
    assert results[-1].startswith("RESULT ConfigError "), results[-1]
    for word in words:
        assert word in results[-1], results[-1]
