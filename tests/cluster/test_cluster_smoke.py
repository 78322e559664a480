"""Smoke test of the clustered local cloud (runs in `make test`): one RabbitMQ node behind
HAProxy, started and stopped by the CLI; two devices of this library, a value both ways,
isolation between the devices, the `emulate` command against that broker, every listener on
loopback, and a stop that leaves no process behind."""

import asyncio
import json
import os
import subprocess
import sys
import threading
import time

from cluster_helpers import cluster_processes, listening_addresses

LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1 as /proc/net shows them


async def _attach(client, timeout=20.0):
    task = asyncio.ensure_future(client.run())
    deadline = time.monotonic() + timeout
    while not client.connected:
        assert time.monotonic() < deadline, "no attach: %r" % (client.engine.last_error,)
        assert not task.done(), task
        await asyncio.sleep(0.01)
    return task


def _refused_subscription(cloud, dev, topic):
    """Subscribe as ``dev`` (paho, through HAProxy) to ``topic``: True when RabbitMQ refuses it
    (it closes the connection) rather than granting it."""
    import paho.mqtt.client as mqtt

    closed, granted = threading.Event(), threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev.device_id, protocol=mqtt.MQTTv311)
    c.username_pw_set(dev.device_id, dev.secret)
    c.tls_set(ca_certs=cloud.ca_file)
    c.on_connect = lambda cl, ud, fl, rc, pr=None: cl.subscribe(topic, 1) if not rc.is_failure else closed.set()
    c.on_subscribe = lambda cl, ud, mid, rcs, pr=None: granted.set() if not rcs[0].is_failure else closed.set()
    c.on_disconnect = lambda *a: closed.set()
    c.connect(cloud.host, cloud.port)
    c.loop_start()
    try:
        assert closed.wait(10) or granted.wait(0.1), "neither refused nor granted"
        return closed.is_set() and not granted.is_set()
    finally:
        c.disconnect()
        c.loop_stop()


def _cli(workdir, *args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "arduino_iot_cloud.localcloud", "--workdir", str(workdir), *args],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, env=env)


def test_cluster_smoke(cluster_parts, clean_env, tmp_path):
    from arduino_iot_cloud import ArduinoCloudClient
    from arduino_iot_cloud.localcloud.cluster import ClusterCloud

    started = _cli(tmp_path, "cluster", "start", "--nodes", "1")
    cloud = ClusterCloud(tmp_path)
    try:
        assert started.returncode == 0, started.stdout
        cloud.attach()
        assert "127.0.0.1:%d" % cloud.port in started.stdout
        pids = cluster_processes(cloud)
        assert pids, "no cluster process found"
        addresses = listening_addresses(pids)
        assert len(addresses) >= 4, addresses  # epmd, distribution, MQTT/TLS, HAProxy
        assert set(addresses) <= LOOPBACK, addresses
        status = _cli(tmp_path, "cluster", "status", "--json")
        assert json.loads(status.stdout)["running"] == ["lc1@localhost"], status.stdout

        a, b = cloud.add_devices(2, properties={"level": 7})
        cloud.start_emulator()

        async def device_a():
            written = []
            client = ArduinoCloudClient(a.device_id, password=a.secret, server=cloud.host, port=cloud.port,
                                        ssl_params={"cafile": cloud.ca_file})
            client.register("level", value=None, on_write=lambda cl, v: written.append(v))
            client.register("temp", value=20)
            task = await _attach(client)
            assert client["level"] == 7  # the cloud's last value, through HAProxy and RabbitMQ
            client["temp"] = 21
            await asyncio.get_running_loop().run_in_executor(None, cloud.emulator.wait_for, a, "temp", 21, 10)
            await asyncio.get_running_loop().run_in_executor(None, cloud.emulator.set, a, "level", 9)
            deadline = time.monotonic() + 10
            while 9 not in written and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert written[-1] == 9  # (the last values at attach may call on_write first)
            client.stop()
            await task

        asyncio.run(device_a())
        # Isolation: device b may not read device a's thing nor its device topics; its own it may.
        assert _refused_subscription(cloud, b, "/a/t/%s/e/i" % a.thing_id)
        assert _refused_subscription(cloud, b, "/a/d/%s/c/dw" % a.device_id)
        assert not _refused_subscription(cloud, b, "/a/t/%s/e/i" % b.thing_id)

        # The emulator as a command against "any broker" (here node 1 itself, over TLS): device b
        # attaches through HAProxy and gets its thing's last value from it.
        cloud.stop_emulator()
        admin = cloud.admin_credentials()
        env = dict(os.environ, ARDUINO_LOCALCLOUD_BROKER_PASSWORD=admin["password"])
        emulate = subprocess.Popen(
            [sys.executable, "-m", "arduino_iot_cloud.localcloud", "--workdir", str(cloud.dir), "emulate",
             "--broker", "127.0.0.1:%d" % cloud.rabbit.nodes[0].mqtt_port, "--user", admin["user"],
             "--cafile", cloud.ca_file], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            assert "serving 2 devices" in emulate.stdout.readline()

            async def device_b():
                client = ArduinoCloudClient(b.device_id, password=b.secret, server=cloud.host, port=cloud.port,
                                            ssl_params={"cafile": cloud.ca_file})
                client.register("level", value=None)
                task = await _attach(client)
                assert client["level"] == 7
                client.stop()
                await task

            asyncio.run(device_b())
        finally:
            emulate.terminate()
            assert emulate.wait(10) == 0
    finally:
        stopped = _cli(tmp_path, "cluster", "stop")
    assert stopped.returncode == 0 and "cluster stopped" in stopped.stdout, stopped.stdout
    deadline = time.monotonic() + 10
    while cluster_processes(cloud) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cluster_processes(cloud) == []
