"""The node-loss rehearsal (slow: `make cluster-test`): three RabbitMQ nodes behind HAProxy,
100 devices over two worker processes publishing once a second and answering dashboard
writes; node 3 is killed half-way.  Every device it held must reconnect through HAProxy,
attach again and leave the cloud with its latest value; then everything stops."""

import os
import time

import pytest

from cluster_helpers import cluster_processes

DEVICES = int(os.environ.get("CLUSTER_TEST_DEVICES", "100"))


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CLUSTER_TEST"), reason="set CLUSTER_TEST=1 (make cluster-test)")
def test_node_loss_rehearsal(cluster_parts, clean_env, tmp_path):
    from arduino_iot_cloud.localcloud.cluster import ClusterCloud
    from arduino_iot_cloud.localcloud.fleet import Fleet, format_summary

    cloud = ClusterCloud(tmp_path, nodes=3)
    cloud.start()
    try:
        summary = Fleet(cloud, DEVICES, workers=2, rate=1.0, duration=20.0, write_rate=0.2,
                        kill_node=3, progress=None).run()
    finally:
        cloud.stop()
    print(format_summary(summary))
    assert summary["attached"] == DEVICES, summary
    assert summary["errors"] == [], summary["errors"]
    loss = summary["node_loss"]
    # leastconn spreads the devices: node 3 held about a third of them.
    assert DEVICES // 5 <= loss["devices_cut"] <= DEVICES // 2, loss
    assert loss["devices_back"] == loss["devices_cut"], loss
    assert loss["recovery_s"] is not None and loss["recovery_s"] < 15, loss
    assert summary["lost_latest_values"] == 0, summary
    assert summary["latest_write_unanswered"] == 0, summary
    assert summary["messages_received"] > 0.7 * DEVICES * summary["steady_s"], summary  # 1 value/s each
    deadline = time.monotonic() + 10
    while cluster_processes(cloud) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cluster_processes(cloud) == []


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CLUSTER_TEST"), reason="set CLUSTER_TEST=1 (make cluster-test)")
def test_retained_device_info_reaches_every_node(cluster_parts, tmp_path):
    """RabbitMQ keeps a retained message on the node that received it: the emulator (on node 1)
    must put an event-variant device's retained e/i on the other nodes too."""
    import threading

    import paho.mqtt.client as mqtt

    from arduino_iot_cloud.localcloud.cluster import ClusterCloud

    cloud = ClusterCloud(tmp_path, nodes=2)
    cloud.start()
    try:
        (dev,) = cloud.add_devices(1, variant="event")
        cloud.start_emulator()
        cloud.emulator.barrier()
        got = threading.Event()
        payloads = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev.device_id, protocol=mqtt.MQTTv311)
        c.username_pw_set(dev.device_id, dev.secret)
        c.tls_set(ca_certs=cloud.ca_file)
        c.on_connect = lambda cl, *a: cl.subscribe("/a/d/%s/e/i" % dev.device_id, 1)
        c.on_message = lambda cl, ud, msg: (payloads.append((msg.retain, msg.payload)), got.set())
        c.connect("127.0.0.1", cloud.rabbit.nodes[1].mqtt_port)  # node 2 directly, not node 1
        c.loop_start()
        try:
            assert got.wait(10), "no retained e/i on node 2"
        finally:
            c.disconnect()
            c.loop_stop()
        retained, payload = payloads[0]
        assert retained and dev.thing_id.encode() in payload
    finally:
        cloud.stop()
