"""The local broker: TLS listeners, authentication, ACL, restart, cleanup."""

import socket
import ssl
import subprocess

import cbor2
import pytest

from arduino_iot_cloud.localcloud import LocalCloud
from arduino_iot_cloud.localcloud.pki import Pki

pytestmark = pytest.mark.e2e


def test_ports_are_distinct_loopback_listeners(local_cloud):
    ports = {local_cloud.password_port, local_cloud.cert_port, local_cloud.admin_port}
    assert len(ports) == 3 and local_cloud.host == "127.0.0.1"
    conf = local_cloud.broker.conf.read_text()
    for port in ports:
        assert "listener %d 127.0.0.1\n" % port in conf
    with pytest.raises(OSError):  # nothing on the wildcard address of another interface
        s = socket.create_connection(("127.0.0.2", local_cloud.password_port), timeout=1)
        s.close()


def test_password_device_connects_with_hostname_check(device_factory, paho_device):
    dev = device_factory()
    for host in ("127.0.0.1", "localhost"):
        d = paho_device(dev, host=host)
        assert not d.connect().is_failure
        d.close()


def test_wrong_password_is_refused_with_connack_5(local_cloud, device_factory, paho_device):
    dev = device_factory()
    mark = local_cloud.broker_mark()
    d = paho_device(dev, password="not-the-secret")
    rc = d.connect(expect_ok=False)
    # paho 2 maps the MQTT 3.1.1 return code 5 onto the MQTT 5 reason "Not authorized" (135)
    assert rc.is_failure and rc == "Not authorized", rc
    # on the wire: CONNACK with return code 5
    assert _raw_tls_connect(local_cloud, local_cloud.password_port, user=dev.device_id,
                            password="not-the-secret") == b"\x20\x02\x00\x05"
    assert _raw_tls_connect(local_cloud, local_cloud.password_port, user=dev.device_id,
                            password=dev.secret) == b"\x20\x02\x00\x00"
    # mosquitto logs the refusal a moment after it answers: wait for the line
    refusal = local_cloud.wait_broker_event("refused", since=mark, timeout=5)
    assert refusal["reason"] == "not authorised", refusal


def test_unknown_user_is_refused(device_factory, paho_device):
    dev = device_factory()
    d = paho_device(dev, username="someone-else")
    assert d.connect(expect_ok=False) == "Not authorized"


def test_cert_device_connects(device_factory, paho_device, local_cloud):
    dev = device_factory(auth="cert")
    d = paho_device(dev)
    assert not d.connect().is_failure
    ev = local_cloud.wait_event(dev, "connect")
    assert ev["username"] == dev.device_id and ev["port"] == local_cloud.cert_port


def _field(data):
    return len(data).to_bytes(2, "big") + data


def _raw_tls_connect(cloud, port, certfile=None, keyfile=None, user=None, password=None):
    """TLS handshake plus a hand-made MQTT 3.1.1 CONNECT; return the first bytes back (b"" = closed)."""
    ctx = ssl.create_default_context(cafile=cloud.ca_file)
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    flags = 0x02 | (0xC0 if user else 0)  # clean session (+ username and password)
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + b"\x00\x0a" + _field(b"probe")
    if user:
        body += _field(user.encode()) + _field(password.encode())
    with socket.create_connection((cloud.host, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(bytes([0x10, len(body)]) + body)
            return s.recv(4)


def test_missing_client_certificate_is_refused(local_cloud):
    mark = local_cloud.broker_mark()
    # TLS 1.3 finishes the client's side of the handshake first, so the refusal shows
    # as an alert ("certificate required"), an EOF, or a plain close: never a CONNACK
    with pytest.raises((ssl.SSLError, ConnectionError)):
        if _raw_tls_connect(local_cloud, local_cloud.cert_port) == b"":
            raise ConnectionError("closed without CONNACK")
    # mosquitto logs the refusal after closing the socket, so the line may come later;
    # which lines it writes depends on when the handshake failed (see logwatch)
    refusal = local_cloud.wait_broker_event("refused", since=mark, timeout=5)
    assert "peer did not return a certificate" in refusal.get("tls_error", ""), refusal


def test_client_certificate_from_another_ca_is_refused(local_cloud, tmp_path):
    other = Pki(tmp_path / "other")
    other.ensure()
    key, cert, _, _ = other.issue_device("intruder")
    mark = local_cloud.broker_mark()
    with pytest.raises((ssl.SSLError, ConnectionError)):
        if _raw_tls_connect(local_cloud, local_cloud.cert_port, str(cert), str(key)) == b"":
            raise ConnectionError("closed without CONNACK")
    refusal = local_cloud.wait_broker_event("refused", since=mark, timeout=5)
    assert "certificate verify failed" in refusal.get("tls_error", ""), refusal


def test_raw_connack_is_sent_for_good_certificate(device_factory, local_cloud):
    dev = device_factory(auth="cert")
    assert _raw_tls_connect(local_cloud, local_cloud.cert_port, dev.certfile, dev.keyfile) == b"\x20\x02\x00\x00"


def test_acl_keeps_a_device_to_its_own_topics(device_factory, paho_device, local_cloud):
    a, b = device_factory(), device_factory(auth="cert")
    da = paho_device(a)
    da.connect()
    assert [rc.value for rc in da.subscribe("/a/d/%s/e/i" % a.device_id)] == [1]  # granted, QoS 1
    da.expect("/a/d/%s/e/i" % a.device_id)  # its own retained thing_id
    # Another device's topics and the CLI's topics are out of reach.  mosquitto 2.0
    # grants such subscriptions but delivers nothing: b's retained thing_id and the
    # retained localcloud/state/* messages must not arrive.
    da.subscribe("/a/d/%s/e/i" % b.device_id)
    da.subscribe("localcloud/#")
    da.roundtrip()
    assert da.taken("/a/d/%s/e/i" % b.device_id) == []
    assert [m for m in da.messages if m[0].startswith("localcloud/")] == []
    mark = local_cloud.mark(b)
    da.publish("/a/d/%s/c/up" % b.device_id, cbor2.dumps(cbor2.CBORTag(0x010700, ["spoofed"])))
    da.roundtrip()
    local_cloud.emulator.barrier()
    assert not [e for e in local_cloud.events(b, since=mark) if e[0] == "device_begin"]
    # another device's thing is granted the same way, and delivers nothing either
    # (every attack on it: test_localcloud_isolation.py)
    assert not da.subscribe("/a/t/%s/e/i" % b.thing_id)[0].is_failure
    local_cloud.set(b, "sw", True)
    da.roundtrip()
    assert da.taken("/a/t/%s/e/i" % b.thing_id) == []


def test_restart_keeps_ports_and_republishes_retained_thing_id(local_cloud, device_factory, paho_device):
    dev = device_factory(variant="event")
    ports = (local_cloud.password_port, local_cloud.cert_port, local_cloud.admin_port)
    d = paho_device(dev)
    d.connect()
    d.subscribe("/a/d/%s/e/i" % dev.device_id)
    d.expect("/a/d/%s/e/i" % dev.device_id)
    connects = d.connects
    local_cloud.wait_event(dev, "subscribe")  # the log has caught up with the first connect
    before_restart = local_cloud.mark(dev)
    local_cloud.restart_broker()
    assert (local_cloud.password_port, local_cloud.cert_port, local_cloud.admin_port) == ports
    d.wait_reconnected(connects)  # clean session: subscriptions are gone, subscribe again
    d.subscribe("/a/d/%s/e/i" % dev.device_id)
    d.expect("/a/d/%s/e/i" % dev.device_id)
    assert local_cloud.emulator.generation >= 2
    # the events tell the story: connect, (broker gone) disconnect, connect again.
    # They come from the broker's log, which may trail the device by a moment.
    local_cloud.wait_event(dev, "connect", since=before_restart)
    evs = local_cloud.events(dev)
    stopped = evs.index(("disconnect", "broker stopped"))
    kinds = [k for k, _ in evs]
    assert kinds.index("connect") < stopped < len(kinds) - 1 - kinds[::-1].index("connect"), evs


def test_stop_leaves_nothing_running(tmp_path):
    cloud = LocalCloud(tmp_path / "wd")
    with cloud:
        pid = cloud.broker.proc.pid
        port = cloud.password_port
        assert (tmp_path / "wd" / "run.json").exists()
    assert not (tmp_path / "wd" / "run.json").exists()
    assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    # a second start reuses the ports and the CA
    ca = cloud.pki.ca_file.read_bytes()
    with LocalCloud(tmp_path / "wd") as again:
        assert again.password_port == port
        assert again.pki.ca_file.read_bytes() == ca


def test_restart_waits_for_a_port_briefly_held_elsewhere(tmp_path):
    # While the broker is down, another socket may hold one of its ports for a
    # moment (e.g. the local end of an outgoing connection): restart waits for it.
    import threading

    with LocalCloud(tmp_path / "wd") as cloud:
        port = cloud.cert_port
        cloud.broker.stop()
        squatter = socket.create_server(("127.0.0.1", port))
        threading.Timer(0.6, squatter.close).start()
        cloud.broker.start()
        assert cloud.broker.running and cloud.cert_port == port
        socket.create_connection(("127.0.0.1", port), timeout=3).close()


def test_issue_certificate_from_csr(local_cloud, device_factory, paho_device, tmp_path):
    """A key that stays elsewhere (a PKCS#11 token in real use): only its CSR is signed."""
    key, csr = tmp_path / "k.pem", tmp_path / "r.csr"
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-subj", "/CN=whatever", "-out", str(csr)], check=True, capture_output=True)
    dev = device_factory(auth="cert", csr=csr)
    assert dev.keyfile is None and dev.certfile.endswith("csr_cert.pem")
    subject = subprocess.run(["openssl", "x509", "-in", dev.certfile, "-noout", "-subject"], check=True,
                             capture_output=True, text=True).stdout
    assert dev.device_id in subject  # CN forced to the device id
    assert not paho_device(dev, certfile=dev.certfile, keyfile=str(key)).connect().is_failure
    # the same for an existing device, through issue_certificate
    other = device_factory(auth="cert")
    cert = local_cloud.issue_certificate(other.device_id, csr)
    assert cert != other.certfile and not paho_device(other, certfile=cert, keyfile=str(key)).connect().is_failure


def test_add_devices_in_one_go(local_cloud, paho_device):
    devs = local_cloud.add_devices(3, variant="command", properties={"x": 0})
    assert len({d.device_id for d in devs}) == 3 and len({d.thing_id for d in devs}) == 3
    for dev in devs:
        assert not paho_device(dev).connect().is_failure
        assert local_cloud.values(dev) == {"x": 0}


def test_secrets_stay_out_of_logs_and_files(local_cloud, device_factory, paho_device, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    dev = device_factory()
    d = paho_device(dev)
    d.connect()
    d.close()
    mark = local_cloud.broker_mark()
    paho_device(dev, password=dev.secret + "x").connect(expect_ok=False)
    local_cloud.wait_broker_event("refused", since=mark, timeout=5)  # its log line was handled too
    admin = local_cloud.admin_credentials()["password"]
    for secret in (dev.secret, admin):
        assert secret not in caplog.text
        assert secret not in local_cloud.broker.log_file.read_text()
        assert secret not in local_cloud.broker.conf.read_text()
        assert secret not in local_cloud.store.path.read_text()
        assert secret not in (local_cloud.broker.pw_devices.read_text() + local_cloud.broker.pw_admin.read_text())
    assert repr(dev).count(dev.secret) == 0
