"""The broker-log follower: mosquitto 2.0 lines in a real file, turned into events."""

from arduino_iot_cloud.localcloud.logwatch import LogWatch

NO_CERT = "error:0A0000C7:SSL routines::peer did not return a certificate"


def _follow(tmp_path, lines):
    log = tmp_path / "mosquitto.log"
    log.write_text("1796148198: mosquitto version 2.0.11 running\n")  # before the watch: skipped
    events = []
    watch = LogWatch(log, lambda kind, client, detail: events.append((kind, client, detail)))
    with open(log, "a") as f:
        f.write("".join("1796148199: %s\n" % line for line in lines))
    watch.poll()
    watch.stop()
    return events


def test_tls_refusal_after_the_connection_carries_the_openssl_error(tmp_path):
    events = _follow(tmp_path, [
        "New connection from 127.0.0.1:52286 on port 55009.",
        "OpenSSL Error[0]: " + NO_CERT,
        "Client <unknown> disconnected: Protocol error.",
        "New connection from 127.0.0.1:52290 on port 55010.",
        "Client <unknown> disconnected, not authorised.",
    ])
    assert events == [
        ("refused", None, {"reason": "Protocol error", "port": 55009, "tls_error": NO_CERT}),
        ("refused", None, {"reason": "not authorised", "port": 55010}),  # the TLS error is not carried over
    ]


def test_tls_refusal_inside_accept_is_a_refusal_too(tmp_path):
    # When the client's whole handshake is already there as mosquitto accepts, the
    # handshake fails inside accept: this is the only line mosquitto writes.
    events = _follow(tmp_path, ["Client connection from 127.0.0.1 failed: %s." % NO_CERT])
    assert events == [("refused", None, {"reason": "TLS handshake failed", "tls_error": NO_CERT,
                                         "peer": "127.0.0.1", "port": None})]


def test_a_partial_line_waits_for_its_end(tmp_path):
    log = tmp_path / "mosquitto.log"
    log.write_text("")
    events = []
    watch = LogWatch(log, lambda kind, client, detail: events.append(kind))
    with open(log, "a") as f:
        f.write("1796148199: Client dev-1 closed its conn")
        f.flush()
        watch.poll()
        assert events == []
        f.write("ection.\n")
    watch.poll()
    watch.stop()
    assert events == ["disconnect"]
