#!/usr/bin/env python3
"""Provision a SoftHSM token whose EC key never leaves it.

    export SOFTHSM_PIN=...  SOFTHSM_SO_PIN=...    (or be prompted)
    python softhsm/provision.py init    --dir DIR [--token device]
    python softhsm/provision.py csr     --dir DIR [--device-id ID] --out device.csr
    (have the CA sign device.csr: arduino-localcloud add-device --csr device.csr,
     arduino-localcloud issue-cert ID device.csr, or LocalCloud.issue_certificate)
    python softhsm/provision.py import-cert --dir DIR --cert device.pem
    python softhsm/provision.py uris    --dir DIR

Theory of operation.  `init` writes DIR/softhsm2.conf (its own token
directory: the system's SoftHSM configuration is never read or touched) and
creates a token with softhsm2-util.  `csr` generates an EC P-256 key pair
*inside* the token (CKA_SENSITIVE, not extractable) and builds a PKCS#10
certificate request for CN=<device id>: the request body is DER-encoded here,
hashed with SHA-256 here, and signed by the token (SoftHSM signs with plain
CKM_ECDSA over the hash; its raw r||s output is DER-encoded for X.509).  Only
the public key comes out.  `import-cert` stores the CA-signed certificate in
the token next to the key (same label and CKA_ID), so a client can name both by
pkcs11: URI.  `uris` prints the URIs and the SOFTHSM2_CONF to export.

Every command that touches the token runs in a process of its own: SoftHSM
reads SOFTHSM2_CONF once per process, when the module is first initialised.
PINs come from the environment or a prompt, never from this script's
command line, and are never printed (softhsm2-util, which creates the token,
takes them only as arguments, visible in the process table while it runs).
"""

import argparse
import getpass
import hashlib
import os
import subprocess
import sys
from typing import Optional

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DEFAULT_TOKEN = "device"
DEFAULT_KEY = "device-key"


class ProvisionError(Exception):
    """A provisioning step failed (message never carries a PIN)."""


def config_path(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "softhsm2.conf")


def write_config(workdir: str) -> str:
    """Create workdir/tokens and workdir/softhsm2.conf; return the config path."""
    tokendir = os.path.join(os.path.abspath(workdir), "tokens")
    os.makedirs(tokendir, mode=0o700, exist_ok=True)
    path = config_path(workdir)
    with open(path, "w") as f:
        f.write("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n" % tokendir)
    return path


def token_env(workdir: str) -> dict:
    """os.environ plus SOFTHSM2_CONF pointing at this workdir's config."""
    env = dict(os.environ)
    env["SOFTHSM2_CONF"] = config_path(workdir)
    return env


def init_token(workdir: str, label: str, pin: str, so_pin: str) -> None:
    """Create the config and an empty token called label."""
    write_config(workdir)
    # softhsm2-util takes the PINs as arguments only; they stay on this
    # machine's process table for the instant the tool runs.
    cmd = ["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", so_pin, "--pin", pin]
    try:
        done = subprocess.run(cmd, env=token_env(workdir), capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise ProvisionError("softhsm2-util not found (apt install softhsm2)")
    if done.returncode != 0:
        raise ProvisionError("softhsm2-util failed: %s" % _scrub(done.stderr + done.stdout, pin, so_pin))


def _scrub(text: str, *secrets: str) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text.strip()


def _open_session(workdir: str, token_label: str, pin: str, module: str):
    os.environ["SOFTHSM2_CONF"] = config_path(workdir)  # read when the module initialises
    import pkcs11
    from pkcs11.exceptions import NoSuchToken, PinIncorrect

    lib = pkcs11.lib(module)
    try:
        token = lib.get_token(token_label=token_label)
    except NoSuchToken:
        raise ProvisionError("no token labelled %r in %s" % (token_label, workdir))
    try:
        return token.open(rw=True, user_pin=pin)
    except PinIncorrect:
        raise ProvisionError("wrong PIN for token %r" % token_label)


def _der_signature(raw: bytes) -> bytes:
    from pkcs11.util.ec import encode_ecdsa_signature

    return encode_ecdsa_signature(raw)


def build_csr(device_id: str, spki_der: bytes, sign) -> bytes:
    """A DER PKCS#10 request for CN=device_id; sign(sha256_digest) -> raw r||s."""
    from asn1crypto import csr, keys, x509

    info = csr.CertificationRequestInfo({
        "version": "v1",
        "subject": x509.Name.build({"common_name": device_id}),
        "subject_pk_info": keys.PublicKeyInfo.load(spki_der),
        "attributes": [],
    })
    body = info.dump()
    request = csr.CertificationRequest({
        "certification_request_info": info,
        "signature_algorithm": {"algorithm": "sha256_ecdsa"},
        "signature": _der_signature(sign(hashlib.sha256(body).digest())),
    })
    return request.dump()


def make_key_and_csr(workdir: str, device_id: str, pin: str, token_label: str = DEFAULT_TOKEN,
                     key_label: str = DEFAULT_KEY, module: str = DEFAULT_MODULE) -> bytes:
    """Generate the key pair in the token and return a DER CSR signed by it."""
    from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
    from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

    with _open_session(workdir, token_label, pin, module) as session:
        existing = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: key_label}))
        if existing:
            raise ProvisionError("token %r already holds a key labelled %r" % (token_label, key_label))
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
        # A fresh CKA_ID per key: libp11 pairs a private key with its public
        # key and certificate by id, so two keys must never share one.
        public, private = params.generate_keypair(
            store=True, label=key_label, id=os.urandom(8),
            private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False})
        return build_csr(device_id, encode_ec_public_key(public),
                         lambda digest: private.sign(digest, mechanism=Mechanism.ECDSA))


def import_certificate(workdir: str, cert_der: bytes, pin: str, token_label: str = DEFAULT_TOKEN,
                       key_label: str = DEFAULT_KEY, module: str = DEFAULT_MODULE) -> None:
    """Store the certificate in the token with the key's label and id."""
    from asn1crypto import x509
    from pkcs11 import Attribute, CertificateType, ObjectClass

    cert = x509.Certificate.load(cert_der)
    with _open_session(workdir, token_label, pin, module) as session:
        keys = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: key_label}))
        if len(keys) != 1:
            raise ProvisionError("token %r holds %d keys labelled %r, need exactly one"
                                 % (token_label, len(keys), key_label))
        key_id = keys[0][Attribute.ID]
        for old in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: key_label}):
            old.destroy()
        session.create_object({
            Attribute.CLASS: ObjectClass.CERTIFICATE,
            Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
            Attribute.TOKEN: True,
            Attribute.LABEL: key_label,
            Attribute.ID: key_id,
            Attribute.SUBJECT: cert.subject.dump(),
            Attribute.VALUE: cert_der,
        })


def key_uri(token_label: str = DEFAULT_TOKEN, key_label: str = DEFAULT_KEY) -> str:
    return "pkcs11:token=%s;object=%s;type=private" % (token_label, key_label)


def cert_uri(token_label: str = DEFAULT_TOKEN, key_label: str = DEFAULT_KEY) -> str:
    return "pkcs11:token=%s;object=%s;type=cert" % (token_label, key_label)


def pem_or_der_to_der(data: bytes) -> bytes:
    if b"-----BEGIN" not in data:
        return data
    from asn1crypto import pem

    return pem.unarmor(data)[2]


def _pin(name: str, prompt: str) -> str:
    value = os.environ.get(name)
    if value:
        return value
    if not sys.stdin.isatty():
        raise ProvisionError("set %s (PINs are never taken from the command line)" % name)
    return getpass.getpass(prompt)


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description="SoftHSM token, key, CSR and certificate for a device")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("init", "csr", "import-cert", "uris"):
        p = sub.add_parser(name)
        p.add_argument("--dir", required=True, help="directory holding softhsm2.conf and the tokens")
        p.add_argument("--token", default=DEFAULT_TOKEN, help="token label")
        p.add_argument("--key", default=DEFAULT_KEY, help="key (and certificate) label")
        p.add_argument("--module", default=DEFAULT_MODULE, help="PKCS#11 module")
        if name == "csr":
            p.add_argument("--device-id", default="device",
                           help="the CSR's CN (the local CA replaces it with the device id it assigns)")
            p.add_argument("--out", required=True, help="CSR file to write (PEM)")
        if name == "import-cert":
            p.add_argument("--cert", required=True, help="certificate file (PEM or DER)")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "init":
            init_token(args.dir, args.token, _pin("SOFTHSM_PIN", "User PIN: "),
                       _pin("SOFTHSM_SO_PIN", "SO PIN: "))
            print("token %r created; SOFTHSM2_CONF=%s" % (args.token, config_path(args.dir)))
        elif args.cmd == "csr":
            der = make_key_and_csr(args.dir, args.device_id, _pin("SOFTHSM_PIN", "User PIN: "),
                                   args.token, args.key, args.module)
            from asn1crypto import pem

            with open(args.out, "wb") as f:
                f.write(pem.armor("CERTIFICATE REQUEST", der))
            print("key %r generated in token %r; CSR written to %s" % (args.key, args.token, args.out))
        elif args.cmd == "import-cert":
            with open(args.cert, "rb") as f:
                der = pem_or_der_to_der(f.read())
            import_certificate(args.dir, der, _pin("SOFTHSM_PIN", "User PIN: "), args.token, args.key,
                               args.module)
            print("certificate stored in token %r as %r" % (args.token, args.key))
        else:
            print("SOFTHSM2_CONF=%s" % config_path(args.dir))
            print("keyfile=%s" % key_uri(args.token, args.key))
            print("certfile=%s" % cert_uri(args.token, args.key))
    except ProvisionError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
