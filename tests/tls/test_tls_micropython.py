"""The same TLS refusals on the MicroPython unix port (mbedTLS): each one is a
TLSError with the reason in words on engine.last_error, never an exception out
of update() (mbedTLS reports a failed certificate check as ValueError, and a
refused client certificate in its TLS 1.2 handshake as EPIPE)."""

import os
import shutil
import subprocess

import pytest

import tlsenv

pytestmark = pytest.mark.e2e

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", "..", "src"))

CASES = [
    ("wrong CA", "ok", "rogue-ca", None, "not signed by a trusted CA"),
    ("server cert from an unknown CA", "rogue", "good-ca", None, "not signed by a trusted CA"),
    ("wrong hostname", "wronghost", "good-ca", None, "not valid for the host name 127.0.0.1"),
    ("expired server certificate", "expired", "good-ca", None, "has expired"),
    ("client cert not signed by the broker's CA", "mtls", "good-ca", "client-rogue", "client certificate"),
    # mbedTLS falls back to the CN when a certificate has no subjectAltName;
    # CPython does not: the library refuses it here too.
    ("no SAN, CN = the IP address", "nosan", "good-ca", None, "not valid for the host name"),
    ("no SAN, CN = the DNS name", "nosan-dns", "good-ca", None, "not valid for the host name"),
    ("control: good server", "ok", "good-ca", None, None),
    ("control: DNS name in the SAN", "wronghost", "good-ca", None, None),
    ("control: good client cert", "mtls", "good-ca", "client-ok", None),
]


@pytest.mark.parametrize("name,listener,ca,cert,reason", CASES, ids=[c[0] for c in CASES])
def test_micropython_tls_refusals(name, listener, ca, cert, reason, tls_broker):
    exe = shutil.which("micropython")
    if exe is None:
        pytest.skip("micropython (unix port) is not installed")
    pki = tls_broker.pki
    args = [exe, os.path.join(HERE, "mpy_tls_client.py"), str(tls_broker.ports[listener]), pki.path(ca, "pem")]
    if cert:
        args += [pki.path(cert, "key"), pki.path(cert, "pem")]
    hostname = "wrong.example" if name.startswith("control") and listener == "wronghost" \
        else tlsenv.SERVER_HOSTNAME.get(listener)
    if hostname:
        args.append("server_hostname=" + hostname)
    env = {"MICROPYPATH": "%s:%s:.frozen" % (SRC, HERE), "PATH": os.environ.get("PATH", "")}
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30, env=env)
    results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and results, (proc.stdout[-1000:], proc.stderr[-2000:])
    result = results[-1]
    if reason is None:
        assert result == "RESULT connected", result
    else:
        assert result.startswith("RESULT TLSError "), result
        assert reason in result, result
        assert "mpy-Secret-77" not in proc.stdout + proc.stderr


def test_subject_alt_name_reader_agrees_with_cryptography(tls_broker, tmp_path):
    # The DER reader behind the MicroPython check, on both runtimes, against the
    # `cryptography` package's reading of the same certificates: servers with
    # and without a SAN, a CA (extensions, no SAN), a version 1 certificate
    # (no extensions at all), and a truncated certificate (refused).
    exe = shutil.which("micropython")
    if exe is None:
        pytest.skip("micropython (unix port) is not installed")
    from cryptography import x509

    from arduino_iot_cloud.certfiles import has_subject_alt_name, pem_to_der

    pki = tls_broker.pki
    tlsenv.openssl("req", "-new", "-key", pki.path("server-ok", "key"), "-subj", "/CN=127.0.0.1",
                   "-out", str(tmp_path / "v1.csr"), cwd=tmp_path)
    tlsenv.openssl("x509", "-req", "-in", str(tmp_path / "v1.csr"), "-signkey", pki.path("server-ok", "key"),
                   "-days", "1", "-out", str(tmp_path / "v1.pem"), cwd=tmp_path)
    paths = [pki.path(n, "pem") for n in ("server-ok", "server-wronghost", "server-nosan", "server-nosan-dns",
                                          "good-ca")] + [str(tmp_path / "v1.pem")]
    expected = []
    for path in paths:
        with open(path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        try:
            cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            expected.append(True)
        except x509.ExtensionNotFound:
            expected.append(False)
    assert expected == [True, True, False, False, False, False]

    def der(path):
        with open(path, "rb") as f:
            return pem_to_der(f.read())

    assert [has_subject_alt_name(der(p)) for p in paths] == expected
    assert [has_subject_alt_name(memoryview(der(p))) for p in paths] == expected
    truncated = der(paths[0])[:200]
    with pytest.raises((ValueError, IndexError)):
        has_subject_alt_name(truncated)

    script = ("import sys\nfrom arduino_iot_cloud.certfiles import has_subject_alt_name, pem_to_der\n"
              "for p in sys.argv[1:]:\n"
              "    d = pem_to_der(open(p, 'rb').read())\n"
              "    print(has_subject_alt_name(memoryview(d)))\n")
    env = {"MICROPYPATH": "%s:.frozen" % SRC, "PATH": os.environ.get("PATH", "")}
    proc = subprocess.run([exe, "-c", script] + paths, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=30, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(x) for x in expected]
