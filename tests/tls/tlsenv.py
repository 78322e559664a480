"""Certificates made for the TLS refusal tests (openssl CLI) and a mosquitto
with one listener per server certificate, all on 127.0.0.1.

PKI (EC P-256) under a temporary directory:
  good-ca          the CA the client trusts; signs every server certificate
  rogue-ca         a CA nobody trusts; signs a server cert and a client cert
  server-ok        SAN IP:127.0.0.1                      (signed by good-ca)
  server-wronghost SAN DNS:wrong.example only            (signed by good-ca)
  server-expired   SAN IP:127.0.0.1, valid 2020-01..02   (signed by good-ca)
  server-rogue     SAN IP:127.0.0.1                      (signed by rogue-ca)
  server-nosan     no SAN, CN=127.0.0.1                  (signed by good-ca)
  server-nosan-dns no SAN, CN=broker.test                (signed by good-ca)
  client-ok        CN=<device id>                        (signed by good-ca)
  client-rogue     CN=<device id>                        (signed by rogue-ca)
Listeners: ok, wronghost, expired, rogue, nosan, nosan-dns (server certs as
named, anonymous MQTT allowed so only TLS can refuse), and mtls (server-ok, client certificate
required and checked against good-ca).
"""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
default_ca = ca_default
[ca_default]
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
[policy_any]
commonName = supplied
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_server_ip]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_server_wronghost]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_server_nosan]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

DEVICE_ID = "0f6b8a2e-1c3d-4e5f-8a9b-tlsrefusal01"
# The name in server-nosan-dns's CN; the client connects to 127.0.0.1 and
# checks this name (ssl_params server_hostname).
NOSAN_DNS_NAME = "broker.test"
SERVER_HOSTNAME = {"nosan-dns": NOSAN_DNS_NAME}  # listener -> the host name to check, if not 127.0.0.1


def openssl(*args, cwd):
    proc = subprocess.run(("openssl",) + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=30)
    if proc.returncode:
        raise RuntimeError("openssl %s: %s" % (args[0], proc.stderr.strip()))
    return proc.stdout


class Pki:
    def __init__(self, directory):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "newcerts").mkdir(exist_ok=True)
        (self.dir / "index.txt").write_text("")
        (self.dir / "serial").write_text("1000\n")
        self.cnf = self.dir / "openssl.cnf"
        self.cnf.write_text(_CNF.format(dir=self.dir))

    def path(self, name, ext):
        return str(self.dir / ("%s.%s" % (name, ext)))

    def key(self, name):
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", self.path(name, "key"),
                cwd=self.dir)

    def ca(self, name):
        self.key(name)
        openssl("req", "-config", str(self.cnf), "-new", "-x509", "-key", self.path(name, "key"),
                "-subj", "/CN=%s" % name, "-days", "30", "-extensions", "v3_ca", "-out", self.path(name, "pem"),
                cwd=self.dir)

    def leaf(self, name, ca, ext, cn, start=None, end=None):
        self.key(name)
        openssl("req", "-config", str(self.cnf), "-new", "-key", self.path(name, "key"), "-subj", "/CN=%s" % cn,
                "-out", self.path(name, "csr"), cwd=self.dir)
        dates = ["-startdate", start, "-enddate", end] if start else ["-days", "30"]
        openssl("ca", "-config", str(self.cnf), "-batch", "-notext", "-cert", self.path(ca, "pem"),
                "-keyfile", self.path(ca, "key"), "-extensions", ext, "-in", self.path(name, "csr"),
                "-out", self.path(name, "pem"), *dates, cwd=self.dir)


def make_pki(directory):
    pki = Pki(directory)
    pki.ca("good-ca")
    pki.ca("rogue-ca")
    pki.leaf("server-ok", "good-ca", "v3_server_ip", "127.0.0.1")
    pki.leaf("server-wronghost", "good-ca", "v3_server_wronghost", "wrong.example")
    pki.leaf("server-expired", "good-ca", "v3_server_ip", "127.0.0.1",
             start="20200101000000Z", end="20200201000000Z")
    pki.leaf("server-rogue", "rogue-ca", "v3_server_ip", "127.0.0.1")
    pki.leaf("server-nosan", "good-ca", "v3_server_nosan", "127.0.0.1")
    pki.leaf("server-nosan-dns", "good-ca", "v3_server_nosan", NOSAN_DNS_NAME)
    pki.leaf("client-ok", "good-ca", "v3_client", DEVICE_ID)
    pki.leaf("client-rogue", "rogue-ca", "v3_client", DEVICE_ID)
    return pki


class PortTaken(RuntimeError):
    pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _mosquitto():
    for path in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if path and os.path.exists(path):
            return path
    return None


class TlsBroker:
    """mosquitto with the listeners described above."""

    LISTENERS = ("ok", "wronghost", "expired", "rogue", "mtls", "nosan", "nosan-dns")

    def __init__(self, pki):
        self.pki = pki
        self.ports = {name: free_port() for name in self.LISTENERS}
        self.proc = None
        self.log = pki.dir / "mosquitto.log"

    def _conf(self):
        p = self.pki.path
        lines = ["per_listener_settings true", "log_dest file %s" % self.log, "log_type all"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.insert(0, "user root")
        certs = {"ok": "server-ok", "wronghost": "server-wronghost", "expired": "server-expired",
                 "rogue": "server-rogue", "mtls": "server-ok", "nosan": "server-nosan",
                 "nosan-dns": "server-nosan-dns"}
        for name in self.LISTENERS:
            ca = "rogue-ca" if name == "rogue" else "good-ca"
            lines += ["", "listener %d 127.0.0.1" % self.ports[name], "allow_anonymous true",
                      "cafile %s" % p(ca, "pem"), "certfile %s" % p(certs[name], "pem"),
                      "keyfile %s" % p(certs[name], "key")]
            if name == "mtls":
                lines += ["require_certificate true", "use_identity_as_username true"]
        return "\n".join(lines) + "\n"

    def start(self):
        # The ports were free when picked; one may be taken by now: pick again.
        for attempt in range(3):
            try:
                return self._start()
            except PortTaken:
                self.ports = {name: free_port() for name in self.LISTENERS}
        return self._start()

    def _start(self):
        exe = _mosquitto()
        if exe is None:
            raise RuntimeError("mosquitto is not installed")
        if len(set(self.ports.values())) != len(self.ports):
            raise PortTaken("the same port picked twice")
        conf = self.pki.dir / "mosquitto.conf"
        conf.write_text(self._conf())
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        for port in self.ports.values():
            while True:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode(errors="replace")
                    self.proc.stderr.close()
                    if os.path.exists(self.log):  # mosquitto writes bind errors to its log
                        err += open(self.log, errors="replace").read()[-2000:]
                    if "in use" in err:
                        raise PortTaken(err)
                    raise RuntimeError("mosquitto exited: %s" % err)
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("mosquitto did not listen on %d" % port)
                    time.sleep(0.05)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
