"""The cluster's pure parts, without a broker: RabbitMQ's password hash, the device
permissions (checked as RabbitMQ checks them: a regex on the routing key), the HAProxy
config, the fleet's percentiles."""

import base64
import hashlib
import re
from pathlib import Path

from arduino_iot_cloud.localcloud.fleet import percentiles
from arduino_iot_cloud.localcloud.haproxy import HAProxy
from arduino_iot_cloud.localcloud.rabbit import device_permissions, password_hash

DEV, THING = "0b6a3f4e-1111-4222-8333-944455556666", "7c1d2e3f-aaaa-4bbb-8ccc-dddd00001111"
OTHER, OTHER_THING = "1b6a3f4e-1111-4222-8333-944455556666", "8c1d2e3f-aaaa-4bbb-8ccc-dddd00001111"


def _key(topic):
    """The routing key RabbitMQ's MQTT plugin makes of a topic ('/' becomes '.')."""
    return topic.replace("/", ".")


def _allowed(pattern, topic, username=DEV):
    return re.search(pattern.replace("{username}", username), _key(topic)) is not None


def test_password_hash_is_salted_sha256_that_verifies():
    h = password_hash("s3cret")
    raw = base64.b64decode(h)
    salt, digest = raw[:4], raw[4:]
    assert digest == hashlib.sha256(salt + b"s3cret").digest()
    assert password_hash("s3cret") != h  # a new salt every time
    assert "s3cret" not in h


def test_device_reads_and_writes_only_its_own_topics():
    vhost, topic = device_permissions(DEV, THING)
    for t in ("/a/d/%s/c/up" % DEV, "/a/t/%s/e/o" % THING, "/a/t/%s/shadow/o" % THING):
        assert _allowed(topic["write"], t), t
    for t in ("/a/d/%s/e/i" % DEV, "/a/d/%s/c/dw" % DEV, "/a/t/%s/e/i" % THING, "/a/t/%s/shadow/i" % THING):
        assert _allowed(topic["read"], t), t
    # Not the other direction, not another device's or thing's topics, nothing longer.
    for t in ("/a/d/%s/c/dw" % DEV, "/a/t/%s/e/i" % THING, "/a/d/%s/c/up" % OTHER, "/a/t/%s/e/o" % OTHER_THING,
              "/a/t/%s/e/o/x" % THING, "x/a/d/%s/c/up" % DEV, "localcloud/ctl/set"):
        assert not _allowed(topic["write"], t), t
    for t in ("/a/d/%s/e/i" % OTHER, "/a/t/%s/e/i" % OTHER_THING, "/a/t/%s/e/o" % THING, "/a/d/%s/c/up" % DEV,
              "localcloud/state/%s" % DEV):
        assert not _allowed(topic["read"], t), t
    # Its own subscription queues only.
    assert re.search(vhost["configure"], "mqtt-subscription-%sqos1" % DEV)
    assert not re.search(vhost["configure"], "mqtt-subscription-%sqos1" % OTHER)
    assert not re.search(vhost["write"], "amq.direct")


def test_device_without_thing_gets_no_thing_topics():
    _, topic = device_permissions(DEV, "")
    assert _allowed(topic["write"], "/a/d/%s/c/up" % DEV)
    assert not _allowed(topic["write"], "/a/t/%s/e/o" % THING)


def test_thing_ids_are_escaped_not_patterns():
    _, topic = device_permissions(DEV, "a.b")
    assert _allowed(topic["write"], "/a/t/a.b/e/o")
    assert not _allowed(topic["write"], "/a/t/aXb/e/o")


def test_haproxy_config_listens_on_loopback_only_and_passes_tls_through(tmp_path):
    cfg = HAProxy(Path(tmp_path), [("127.0.0.1", 1001), ("127.0.0.1", 1002)], port=2000).config()
    binds = [line.split()[1] for line in cfg.splitlines() if line.strip().startswith("bind")]
    assert binds == ["127.0.0.1:2000"]
    assert "mode tcp" in cfg and "ssl" not in cfg  # TLS is passed through, never terminated here
    assert cfg.count("server node") == 2 and "on-marked-down shutdown-sessions" in cfg


def test_percentiles_nearest_rank():
    p = percentiles(list(range(1, 101)))
    assert (p["p50"], p["p90"], p["p99"], p["max"], p["count"]) == (50, 90, 99, 100, 100)
    assert percentiles([])["count"] == 0 and percentiles([])["p50"] is None
    assert percentiles([3.0])["p99"] == 3.0


def test_only_device_queues_are_mirrored():
    from arduino_iot_cloud.localcloud.rabbit import MIRRORED_QUEUES

    assert re.search(MIRRORED_QUEUES, "mqtt-subscription-%sqos1" % DEV)
    assert not re.search(MIRRORED_QUEUES, "mqtt-subscription-localcloud-emulator-1a2b3c4dqos1")
    assert not re.search(MIRRORED_QUEUES, "amq.gen-x")
