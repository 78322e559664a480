"""Over-the-air updates end to end on the local cloud: a real mosquitto over TLS, the
device (examples/ota_device.py launching examples/ota_app at some version) in a
supervised subprocess, OtaUpdateCmdDown sent by the cloud emulator, the OTA file
served over HTTPS from a test server holding a certificate of the local cloud's CA,
and every report read back from c/up.  Until the cloud side (packer, file server,
`localcloud ota`) is merged, files are built here with a literal-only LZSS stream."""

import os

import pytest

from arduino_iot_cloud.ota import install_file
from otatools import HttpsFileServer, bundle, example_app, literal_lzss, make_tar, ota_file

OTA_UPDATE_DOWN = 0x010100
AVAILABLE, START, FETCH, FLASH, REBOOT, FAIL, UNAVAILABLE = 3, 4, 5, 6, 7, 8, 9
ZERO = bytes(32)


def provision(tmp_path, version=1):
    """An OTA root with `version` of the example application installed; its sha256."""
    root = tmp_path / "otaroot"
    data, sha = bundle(example_app(version))
    path = tmp_path / ("v%d-initial.ota" % version)
    path.write_bytes(data)
    assert install_file(str(root), str(path)) == sha
    return root, sha


def serve(server, name, files=None, data=None, **kw):
    """Put an OTA file on the server; (url, sha256 of its payload)."""
    if data is None:
        data, sha = bundle(files, **kw)
    else:
        sha = None
    (server.dir / name).write_bytes(data)
    return server.url(name), sha


def send_update(cloud, dev, url, final, initial=ZERO):
    ota_id = os.urandom(16)
    cloud.send_command(dev, OTA_UPDATE_DOWN, [ota_id, url, initial, final])
    return ota_id


def expect_failure(cloud, dev, up, url, final, code, initial=ZERO):
    since = up.mark()
    ota_id = send_update(cloud, dev, url, final, initial)
    _, entry = up.state(ota_id, FAIL, since=since, timeout=30)
    assert entry[3] == code, up.describe()
    return ota_id


def update_to_v2(local_cloud, dev, up, file_server, padding=0):
    url, sha2 = serve(file_server, "v2.ota", example_app(2, padding=padding))
    url += "?X-Amz-Signature=SIGNATURE-SECRET"  # a signed URL: its query must stay out of logs
    since = up.mark()
    ota_id = send_update(local_cloud, dev, url, sha2)
    up.begin(sha2, since=since, timeout=60)
    states = [s for s, _ in up.states(ota_id)]
    assert states[:3] == [AVAILABLE, START, FETCH], up.describe()
    assert states[-2:] == [FLASH, REBOOT], up.describe()
    return ota_id, sha2


@pytest.mark.parametrize("mode, variant", [("async", "both"), ("sync", "command"), ("async", "event")])
def test_update_from_version_1_to_2(local_cloud, device_factory, tmp_path, file_server, watch, device_run,
                                    mode, variant):
    dev = device_factory(variant=variant)
    root, sha1 = provision(tmp_path)
    up = watch(dev)
    file_server.httpd.close_each = mode == "sync"  # a server that closes after every response
    device = device_run(dev, root, sync=(mode == "sync"), OTA_CHUNK=16384)
    up.begin(sha1)
    local_cloud.wait_for(dev, "version", 1, timeout=20)
    ota_id, sha2 = update_to_v2(local_cloud, dev, up, file_server, padding=40000)
    local_cloud.wait_for(dev, "version", 2, timeout=20)
    # Fetched in Range requests of 16 KB, on one kept-alive connection (unless the server closes).
    ranges = [r for p, r in file_server.requests if p.startswith("/v2.ota")]
    assert len(ranges) >= 3 and ranges[0] == "bytes=0-16383" and ranges[1] == "bytes=16384-32767", ranges
    assert len(file_server.httpd.connections) == (len(ranges) if mode == "sync" else 1)
    fetched = [data for s, data in up.states(ota_id) if s == FETCH]
    assert fetched == [0], "Fetch at the start, then at most every 10 s: %s" % fetched
    times = [e[4] for e in up.entries if e[0] == "ota_progress"]
    assert times == sorted(set(times)), "progress times are strictly increasing microseconds"
    assert device.proc.poll() is None and device.starts == 1, "CPython restarts in place (execv)"
    assert "Traceback" not in device.output(), device.output()[-3000:]
    assert dev.secret not in device.output() and "SIGNATURE-SECRET" not in device.output()


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_update_on_the_micropython_unix_port(local_cloud, device_factory, tmp_path, file_server, watch,
                                            device_run, mode):
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    up = watch(dev)
    device = device_run(dev, root, runtime="micropython", sync=(mode == "sync"), restart_on=(0,), OTA_CHUNK=8192)
    up.begin(sha1, timeout=40)
    update_to_v2(local_cloud, dev, up, file_server, padding=30000)
    local_cloud.wait_for(dev, "version", 2, timeout=30)
    assert device.exits == [0], "the unix port restarts by exiting with status 0: %s" % device.exits
    assert "Traceback" not in device.output(), device.output()[-3000:]


def test_failures_are_reported_and_leave_the_device_running(local_cloud, device_factory, tmp_path, file_server,
                                                            watch, device_run):
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    up = watch(dev)
    device = device_run(dev, root)
    up.begin(sha1)
    good = example_app(2)
    url, sha2 = serve(file_server, "good.ota", good)
    expect_failure(local_cloud, dev, up, url.replace("https://", "http://"), sha2, -9)
    expect_failure(local_cloud, dev, up, "https://127.0.0.1:1/x.ota", sha2, -10)
    # A server whose certificate no CA the device trusts signed: refused at once, -10.
    from arduino_iot_cloud.localcloud.pki import Pki

    other = Pki(tmp_path / "other-pki")
    other.ensure()
    stranger = HttpsFileServer(str(file_server.dir), str(other.server_cert), str(other.server_key))
    try:
        expect_failure(local_cloud, dev, up, stranger.url("good.ota"), sha2, -10)
        assert not stranger.requests, "no request went to a server that failed the TLS check"
    finally:
        stranger.stop()
    expect_failure(local_cloud, dev, up, file_server.url("missing.ota"), sha2, -14)
    for name, kw, code in (("long.ota", {"length_delta": 7}, -5), ("crc.ota", {"crc_delta": 1}, -6),
                           ("magic.ota", {"magic": 0x23418054}, -7)):
        bad_url, _ = serve(file_server, name, good, **kw)
        expect_failure(local_cloud, dev, up, bad_url, sha2, code)
    # A server that answers, then always breaks off before the first body byte: tried again
    # 3 times (OTA_RETRIES) without progress, then -12.  (Progress resets the count.)
    file_server.httpd.drop_after, file_server.httpd.drops = 0, 1000
    cut_url, cut_sha = serve(file_server, "cut.ota", example_app(2, padding=40000))
    expect_failure(local_cloud, dev, up, cut_url, cut_sha, -12)
    file_server.httpd.drops = 0
    expect_failure(local_cloud, dev, up, url, bytes(31) + b"\x01", -201)   # not the announced payload
    expect_failure(local_cloud, dev, up, url, sha2, -202, initial=b"\x07" * 32)  # built for another version
    evil = make_tar({"main.py": b"x"}) [:-1024] + make_tar({"../evil.py": b"x"})
    evil_url, _ = serve(file_server, "evil.ota", data=ota_file(literal_lzss(evil)))
    expect_failure(local_cloud, dev, up, evil_url, sha2, -203)
    assert not (root / "evil.py").exists() and not (tmp_path / "evil.py").exists()
    # Still version 1, still attached: a dashboard write reaches it and it answers.
    assert device.proc.poll() is None and device.starts == 1
    since = up.mark()
    local_cloud.detach(dev)
    local_cloud.reassign(dev)
    up.begin(sha1, since=since)
    assert open(os.path.join(root, "state")).read().count("sha=%s" % sha1.hex()) == 1


def test_a_second_update_during_one_is_refused(local_cloud, device_factory, tmp_path, file_server, watch,
                                               device_run):
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    up = watch(dev)
    device_run(dev, root, OTA_CHUNK=8192)
    up.begin(sha1)
    file_server.httpd.delay = 0.5  # slow: 4 KB every 0.5 s
    url, sha2 = serve(file_server, "slow.ota", example_app(2, padding=60000))
    since = up.mark()
    first = send_update(local_cloud, dev, url, sha2)
    up.state(first, FETCH, since=since)
    second = send_update(local_cloud, dev, url, sha2)
    _, entry = up.state(second, FAIL, since=since)
    assert entry[3] == -204
    file_server.httpd.delay = 0
    up.begin(sha2, since=since, timeout=60)
    fetch_times = [e[4] for e in up.entries if e[0] == "ota_progress" and e[1] == first and e[2].value == FETCH]
    assert all(b - a >= 10000000 for a, b in zip(fetch_times, fetch_times[1:])), fetch_times


def test_an_interrupted_download_resumes_where_it_stopped(local_cloud, device_factory, tmp_path, file_server,
                                                          watch, device_run):
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    up = watch(dev)
    device_run(dev, root, OTA_CHUNK=32768)
    up.begin(sha1)
    file_server.httpd.drop_after = 10000
    file_server.httpd.drops = 2
    url, sha2 = serve(file_server, "v2.ota", example_app(2, padding=50000))
    since = up.mark()
    send_update(local_cloud, dev, url, sha2)
    up.begin(sha2, since=since, timeout=60)
    ranges = [r for p, r in file_server.requests if p == "/v2.ota"]
    assert ranges[:3] == ["bytes=0-32767", "bytes=10000-42767", "bytes=20000-52767"], ranges


def test_killed_mid_download_the_old_version_runs_on(local_cloud, device_factory, tmp_path, file_server, watch,
                                                     device_run):
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    up = watch(dev)
    device = device_run(dev, root, OTA_CHUNK=8192)
    up.begin(sha1)
    file_server.httpd.delay = 0.5
    url, sha2 = serve(file_server, "v2.ota", example_app(2, padding=80000))
    since = up.mark()
    ota_id = send_update(local_cloud, dev, url, sha2)
    up.state(ota_id, FETCH, since=since)
    import time

    time.sleep(1.2)  # a few chunks written into the inactive slot
    since = up.mark()
    device.kill()
    up.begin(sha1, since=since, timeout=30)
    local_cloud.wait_for(dev, "version", 1, timeout=20)
    assert device.starts == 2


def test_disk_full_is_reported(local_cloud, device_factory, tmp_path, file_server, watch, device_run):
    # RLIMIT_FSIZE stands in for a full disk: a write past it fails (EFBIG) as one past
    # the end of the disk would (ENOSPC); both are StorageEnd (-15).
    import resource

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (40000, 40000))

    dev = device_factory()
    root, sha1 = provision(tmp_path)
    up = watch(dev)
    device = device_run(dev, root, preexec=limit_file_size)
    up.begin(sha1)
    url, sha2 = serve(file_server, "big.ota", example_app(2, padding=120000))
    expect_failure(local_cloud, dev, up, url, sha2, -15)
    assert device.proc.poll() is None and device.starts == 1
    assert open(os.path.join(root, "state")).read().count("sha=%s" % sha1.hex()) == 1
    assert not os.listdir(os.path.join(root, "b")) if os.path.exists(os.path.join(root, "b")) else True


def test_a_version_that_crashes_at_start_is_rolled_back(local_cloud, device_factory, tmp_path, file_server,
                                                        watch, device_run):
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    up = watch(dev)
    device = device_run(dev, root, OTA_TRIAL_BOOTS=1)
    up.begin(sha1)
    url, sha2 = serve(file_server, "crash.ota", example_app(2, crash=True))
    since = up.mark()
    ota_id = send_update(local_cloud, dev, url, sha2)
    up.state(ota_id, REBOOT, since=since)
    # version 2 dies at start (once allowed), the next start goes back to version 1
    _, entry = up.state(ota_id, FAIL, since=since, timeout=40)
    assert entry[3] == -205
    up.begin(sha1, since=since)
    local_cloud.wait_for(dev, "version", 1, timeout=20)
    # execv into version 2 (its one allowed start) -> exit 1 -> started again: rolled back
    assert device.starts == 2 and device.exits == [1], device.exits
    assert "version 2 fails at start" in device.output()


def test_a_version_that_cannot_attach_is_rolled_back(local_cloud, device_factory, tmp_path, file_server, watch,
                                                    device_run):
    # Version 2 has a wrong device id: it starts and logs in, but never attaches
    # (a wrong password would make start() raise at once, a crash at start).  After
    # OTA_TRIAL_SECONDS it restarts; that start is one more than allowed: back to 1.
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    up = watch(dev)
    device = device_run(dev, root, OTA_TRIAL_BOOTS=1, OTA_TRIAL_SECONDS=3)
    up.begin(sha1)
    url, sha2 = serve(file_server, "noattach.ota", example_app(2, wrong_device_id=True))
    since = up.mark()
    ota_id = send_update(local_cloud, dev, url, sha2)
    up.state(ota_id, REBOOT, since=since)
    _, entry = up.state(ota_id, FAIL, since=since, timeout=40)
    assert entry[3] == -205
    up.begin(sha1, since=since)
    local_cloud.wait_for(dev, "version", 1, timeout=20)
    assert device.starts == 1 and device.exits == [], "restarted in place both times"
    assert "did not attach within 3 s" in device.output()


def test_a_version_with_a_wrong_password_is_rolled_back(local_cloud, device_factory, tmp_path, file_server,
                                                        watch, device_run):
    # start() raises ConnectRefused at once (the first attach fails fast on
    # what retrying cannot fix): version 2 dies at start and is rolled back.
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    up = watch(dev)
    device = device_run(dev, root, OTA_TRIAL_BOOTS=1)
    up.begin(sha1)
    url, sha2 = serve(file_server, "badpassword.ota", example_app(2, wrong_password=True))
    since = up.mark()
    ota_id = send_update(local_cloud, dev, url, sha2)
    up.state(ota_id, REBOOT, since=since)
    _, entry = up.state(ota_id, FAIL, since=since, timeout=40)
    assert entry[3] == -205
    up.begin(sha1, since=since)
    local_cloud.wait_for(dev, "version", 1, timeout=20)
    assert device.starts == 2 and device.exits == [1], device.exits
    assert "ConnectRefused" in device.output()


def test_micropython_rolls_back_a_version_that_crashes(local_cloud, device_factory, tmp_path, file_server, watch,
                                                       device_run):
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    up = watch(dev)
    device = device_run(dev, root, runtime="micropython", OTA_TRIAL_BOOTS=1)
    up.begin(sha1, timeout=40)
    url, sha2 = serve(file_server, "crash.ota", example_app(2, crash=True))
    since = up.mark()
    ota_id = send_update(local_cloud, dev, url, sha2)
    _, entry = up.state(ota_id, FAIL, since=since, timeout=60)
    assert entry[3] == -205
    up.begin(sha1, since=since, timeout=40)
    assert device.exits == [0, 1], "exit 0 to restart, then version 2 dies: %s" % device.exits


def test_an_update_survives_a_broker_restart(local_cloud, device_factory, tmp_path, file_server, watch,
                                             device_run):
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    up = watch(dev)
    device_run(dev, root, OTA_CHUNK=8192)
    up.begin(sha1)
    file_server.httpd.delay = 0.3
    url, sha2 = serve(file_server, "v2.ota", example_app(2, padding=60000))
    since = up.mark()
    ota_id = send_update(local_cloud, dev, url, sha2)
    up.state(ota_id, FETCH, since=since)
    up.stop()
    local_cloud.restart_broker()
    file_server.httpd.delay = 0
    up2 = watch(dev)
    up2.begin(sha2, timeout=60)
    local_cloud.wait_for(dev, "version", 2, timeout=30)


def test_without_ota_the_device_answers_unavailable(local_cloud, device_factory, watch):
    from arduino_iot_cloud import ArduinoCloudClient

    dev = device_factory()
    up = watch(dev)
    client = ArduinoCloudClient(dev.device_id, password=dev.secret, server=local_cloud.host,
                                port=local_cloud.password_port, ssl_params={"cafile": local_cloud.ca_file},
                                sync_mode=True)
    client.start()
    try:
        ota_id = send_update(local_cloud, dev, "https://127.0.0.1/x.ota", ZERO)
        import time

        deadline = time.monotonic() + 10
        while not up.states(ota_id) and time.monotonic() < deadline:
            client.update()
            time.sleep(0.01)
        assert up.states(ota_id)[0][0] == UNAVAILABLE
        assert not [e for e in up.entries if e[0] == "ota_begin"], "no OtaBeginUp without ota="
    finally:
        client.stop()


def test_paho_transport_and_a_restart_of_ones_own(local_cloud, device_factory, tmp_path, file_server, watch):
    # In-process, sync mode, paho doing the MQTT; restart= replaces the default.
    import time

    pytest.importorskip("paho.mqtt")
    from arduino_iot_cloud import ArduinoCloudClient
    from arduino_iot_cloud.ota import OTA, app_dir, slots

    dev = device_factory()
    root, sha1 = provision(tmp_path)
    up = watch(dev)
    restarted = []
    client = ArduinoCloudClient(dev.device_id, password=dev.secret, server=local_cloud.host,
                                port=local_cloud.password_port, ssl_params={"cafile": local_cloud.ca_file},
                                sync_mode=True, transport="paho", ota=OTA(str(root), restart=lambda: restarted.append(1)))
    client.start()
    try:
        up.begin(sha1)
        url, sha2 = serve(file_server, "v2.ota", example_app(2))
        ota_id = send_update(local_cloud, dev, url, sha2)
        deadline = time.monotonic() + 30
        while not restarted and time.monotonic() < deadline:
            client.update()
            time.sleep(0.002)
        assert restarted == [1], up.describe()
        assert [s for s, _ in up.states(ota_id)][-1] == REBOOT
        assert slots.read_state(str(root))["trial"] == 1
        assert open(os.path.join(app_dir(str(root)), "main.py")).read().count("VERSION = 2") == 1
    finally:
        client.stop()
