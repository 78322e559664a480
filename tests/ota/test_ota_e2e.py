"""Over-the-air updates end to end on the local cloud, as users run them: a real mosquitto
over TLS, the device (examples/ota_device.py launching examples/ota_app at some version) in
a supervised subprocess, files built by the cloud side's packer (ota/pack.py), served by
the local cloud's own HTTPS server and sent with ``send_ota``; progress, OtaBeginUp and
the server's requests read back from the cloud's events (``wait_ota``, ``ota_sha``,
``ota_http``).  The failure cases use the server's fault knobs (status, cut_at,
length_delta, rate, url=).  A test HTTPS server (otatools.HttpsFileServer) and a c/up
subscriber remain only where the cloud cannot produce the case: a server that closes
after every response, one with a certificate of another CA."""

import os

import pytest

from arduino_iot_cloud.ota import install_file, pack
from otatools import HttpsFileServer, bundle, example_app, literal_lzss, make_tar, ota_file

OTA_UPDATE_DOWN = 0x010100
FLASH, REBOOT = 6, 7  # OtaProgressCmdUp states, as read from c/up by the test server tests
ZERO = bytes(32)


def pack_app(tmp_path, name, files):
    """Write `files` (path -> bytes or None) as a directory and pack it with the cloud's
    packer; (the OTA file's path, the payload's SHA-256 hex)."""
    top = tmp_path / ("app-" + name)
    for rel, data in sorted(files.items()):
        path = top / rel
        if data is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    out = tmp_path / (name + ".ota")
    return out, pack.pack_file(str(top), str(out))


def provision(tmp_path, version=1):
    """An OTA root with `version` of the example application installed; its sha256."""
    root = tmp_path / "otaroot"
    path, sha = pack_app(tmp_path, "v%d-initial" % version, example_app(version))
    assert install_file(str(root), str(path)).hex() == sha
    return root, bytes.fromhex(sha)


def wait_begin(cloud, dev, sha, since=0, timeout=20):
    """Wait for the device's OtaBeginUp reporting `sha` (bytes)."""
    cloud.wait_event(dev, "ota_begin", sha.hex(), since=since, timeout=timeout)


def progress(cloud, dev, ota_id, since=0):
    """[(state name, state_data)] the device reported for update `ota_id`."""
    return [(p["state"], p["state_data"]) for kind, p in cloud.events(dev, since)
            if kind == "ota_progress" and p["id"] == ota_id]


def expect_fail(cloud, dev, path, code, **kw):
    """send_ota(path, **kw); wait for its Fail and check the code."""
    since = cloud.mark(dev)
    ota_id = cloud.send_ota(dev, path, **kw)
    got = cloud.wait_ota(dev, "Fail", ota_id, since=since, timeout=30)
    assert got["state_data"] == code, progress(cloud, dev, ota_id, since)
    return ota_id


def damaged(tmp_path, name, data):
    """An OTA file the packer would not make (bad header, hostile tar): written as it is."""
    path = tmp_path / name
    path.write_bytes(data)
    return path


def cloud_update_to_v2(cloud, dev, tmp_path, padding=0, **faults):
    path, sha2 = pack_app(tmp_path, "v2", example_app(2, padding=padding))
    since = cloud.mark(dev)
    ota_id = cloud.send_ota(dev, path, **faults)
    wait_begin(cloud, dev, bytes.fromhex(sha2), since=since, timeout=60)
    states = [s for s, _ in progress(cloud, dev, ota_id, since)]
    assert states[:3] == ["OtaAvailable", "StartOTA", "Fetch"], states
    assert states[-2:] == ["FlashOTA", "Reboot"], states
    assert cloud.ota_sha(dev) == sha2
    return ota_id, since


def ranges(cloud, dev, since=0):
    """The Range headers of the device's requests to the cloud's file server, in order."""
    return [d["range"] for kind, d in cloud.events(dev, since) if kind == "ota_http"]


# -- with the test server: what the cloud's server cannot do ------------------------------------

def serve(server, name, files=None, data=None, **kw):
    """Put an OTA file on the test server; (url, sha256 of its payload)."""
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


def test_update_from_a_server_that_closes_after_every_response(local_cloud, device_factory, tmp_path,
                                                               file_server, watch, device_run):
    dev = device_factory(variant="command")
    root, sha1 = provision(tmp_path)
    up = watch(dev)
    file_server.httpd.close_each = True
    device_run(dev, root, sync=True, OTA_CHUNK=16384)
    up.begin(sha1)
    url, sha2 = serve(file_server, "v2.ota", example_app(2, padding=40000))
    since = up.mark()
    ota_id = send_update(local_cloud, dev, url, sha2)
    up.begin(sha2, since=since, timeout=60)
    assert [s for s, _ in up.states(ota_id)][-2:] == [FLASH, REBOOT], up.describe()
    local_cloud.wait_for(dev, "version", 2, timeout=20)
    ranges = [r for p, r in file_server.requests if p.startswith("/v2.ota")]
    assert len(ranges) >= 3 and len(file_server.httpd.connections) == len(ranges), ranges


# -- on the local cloud's own server -------------------------------------------------------------

@pytest.mark.parametrize("mode, variant", [("async", "both"), ("sync", "command"), ("async", "event")])
def test_update_from_version_1_to_2(local_cloud, device_factory, tmp_path, device_run, mode, variant):
    dev = device_factory(variant=variant)
    root, sha1 = provision(tmp_path)
    device = device_run(dev, root, sync=(mode == "sync"), OTA_CHUNK=16384)
    wait_begin(local_cloud, dev, sha1)
    assert local_cloud.ota_sha(dev) == sha1.hex()
    local_cloud.wait_for(dev, "version", 1, timeout=20)
    ota_id, since = cloud_update_to_v2(local_cloud, dev, tmp_path, padding=40000)
    local_cloud.wait_for(dev, "version", 2, timeout=20)
    # Fetched in Range requests of 16 KB.
    got = ranges(local_cloud, dev, since)
    assert len(got) >= 3 and got[:2] == ["bytes=0-16383", "bytes=16384-32767"], got
    fetched = [data for s, data in progress(local_cloud, dev, ota_id, since) if s == "Fetch"]
    assert fetched == [0], "Fetch at the start, then at most every 10 s: %s" % fetched
    times = [p["time"] for kind, p in local_cloud.events(dev, since) if kind == "ota_progress"]
    assert times == sorted(set(times)), "progress times are strictly increasing microseconds"
    assert device.proc.poll() is None and device.starts == 1, "CPython restarts in place (execv)"
    assert "Traceback" not in device.output(), device.output()[-3000:]
    assert dev.secret not in device.output(), "the device's secret stays out of its log"


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_update_on_the_micropython_unix_port(local_cloud, device_factory, tmp_path, device_run, mode):
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    device = device_run(dev, root, runtime="micropython", sync=(mode == "sync"), restart_on=(0,), OTA_CHUNK=8192)
    wait_begin(local_cloud, dev, sha1, timeout=40)
    cloud_update_to_v2(local_cloud, dev, tmp_path, padding=30000)
    local_cloud.wait_for(dev, "version", 2, timeout=30)
    assert device.exits == [0], "the unix port restarts by exiting with status 0: %s" % device.exits
    assert "Traceback" not in device.output(), device.output()[-3000:]


def test_failures_are_reported_and_leave_the_device_running(local_cloud, device_factory, tmp_path, file_server,
                                                            device_run):
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    device = device_run(dev, root)
    wait_begin(local_cloud, dev, sha1)
    good, sha2 = pack_app(tmp_path, "v2", example_app(2))
    url = local_cloud.serve_ota(good, dev)
    expect_fail(local_cloud, dev, good, -9, url=url.replace("https://", "http://"))
    expect_fail(local_cloud, dev, good, -10, url="https://127.0.0.1:1/x.ota")
    # A server whose certificate no CA the device trusts signed (the test server): -10 at once.
    from arduino_iot_cloud.localcloud.pki import Pki

    other = Pki(tmp_path / "other-pki")
    other.ensure()
    stranger = HttpsFileServer(str(file_server.dir), str(other.server_cert), str(other.server_key))
    try:
        (file_server.dir / "good.ota").write_bytes(good.read_bytes())
        expect_fail(local_cloud, dev, good, -10, url=stranger.url("good.ota"))
        assert not stranger.requests, "no request went to a server that failed the TLS check"
    finally:
        stranger.stop()
    expect_fail(local_cloud, dev, good, -14, status=404)
    expect_fail(local_cloud, dev, good, -5, length_delta=7)    # longer than its header says
    expect_fail(local_cloud, dev, good, -5, length_delta=-7)   # shorter
    files = example_app(2)
    for name, kw, code in (("crc.ota", {"crc_delta": 1}, -6), ("magic.ota", {"magic": 0x23418054}, -7)):
        data, sha = bundle(files, **kw)
        expect_fail(local_cloud, dev, damaged(tmp_path, name, data), code, final_sha=sha.hex())
    # A server that always breaks off before the first body byte: tried again 3 times
    # (OTA_RETRIES) without progress, then -12.  (Progress resets the count.)
    big, big_sha = pack_app(tmp_path, "big", example_app(2, padding=40000))
    expect_fail(local_cloud, dev, big, -12, cut_at=0, cuts=1000)
    expect_fail(local_cloud, dev, good, -201, final_sha="00" * 31 + "01")      # not the announced payload
    expect_fail(local_cloud, dev, good, -202, initial_sha="07" * 32)           # built for another version
    evil = make_tar({"main.py": b"x"})[:-1024] + make_tar({"../evil.py": b"x"})
    evil_path = damaged(tmp_path, "evil.ota", ota_file(literal_lzss(evil)))
    expect_fail(local_cloud, dev, evil_path, -203, final_sha=sha2)
    assert not (root / "evil.py").exists() and not (tmp_path / "evil.py").exists()
    # Still version 1, still attached: it answers a reassign with OtaBeginUp.
    assert device.proc.poll() is None and device.starts == 1
    since = local_cloud.mark(dev)
    local_cloud.detach(dev)
    local_cloud.reassign(dev)
    wait_begin(local_cloud, dev, sha1, since=since)
    assert local_cloud.ota_sha(dev) == sha1.hex()
    assert open(os.path.join(root, "state")).read().count("sha=%s" % sha1.hex()) == 1


def test_a_second_update_during_one_is_refused(local_cloud, device_factory, tmp_path, device_run):
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    device_run(dev, root, OTA_CHUNK=8192)
    wait_begin(local_cloud, dev, sha1)
    path, sha2 = pack_app(tmp_path, "slow", example_app(2, padding=60000))
    since = local_cloud.mark(dev)
    first = local_cloud.send_ota(dev, path, rate=8000)
    local_cloud.wait_ota(dev, "Fetch", first, since=since)
    url = local_cloud.serve_ota(path, dev)
    second = local_cloud.send_ota(dev, path, url=url)
    assert local_cloud.wait_ota(dev, "Fail", second, since=since)["state_data"] == -204
    wait_begin(local_cloud, dev, bytes.fromhex(sha2), since=since, timeout=60)
    fetch_times = [t for s, t in ((p["state"], p["time"]) for kind, p in local_cloud.events(dev, since)
                                  if kind == "ota_progress" and p["id"] == first) if s == "Fetch"]
    assert all(b - a >= 10000000 for a, b in zip(fetch_times, fetch_times[1:])), fetch_times


def test_an_interrupted_download_resumes_where_it_stopped(local_cloud, device_factory, tmp_path, device_run):
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    device_run(dev, root, OTA_CHUNK=32768)
    wait_begin(local_cloud, dev, sha1)
    path, sha2 = pack_app(tmp_path, "v2", example_app(2, padding=50000))
    since = local_cloud.mark(dev)
    local_cloud.send_ota(dev, path, cut_at=10000, cuts=1)
    wait_begin(local_cloud, dev, bytes.fromhex(sha2), since=since, timeout=60)
    got = ranges(local_cloud, dev, since)
    # cut at 10000: the next request asks from there; then on, up to the file's end
    size = path.stat().st_size
    assert got[:3] == ["bytes=0-32767", "bytes=10000-42767", "bytes=42768-%d" % min(75535, size - 1)], got


def test_killed_mid_download_the_old_version_runs_on(local_cloud, device_factory, tmp_path, device_run):
    import time

    dev = device_factory()
    root, sha1 = provision(tmp_path)
    device = device_run(dev, root, OTA_CHUNK=8192)
    wait_begin(local_cloud, dev, sha1)
    path, _ = pack_app(tmp_path, "v2", example_app(2, padding=80000))
    since = local_cloud.mark(dev)
    ota_id = local_cloud.send_ota(dev, path, rate=8000)
    local_cloud.wait_ota(dev, "Fetch", ota_id, since=since)
    time.sleep(1.2)  # a few chunks written into the inactive slot
    since = local_cloud.mark(dev)
    device.kill()
    wait_begin(local_cloud, dev, sha1, since=since, timeout=30)
    local_cloud.wait_for(dev, "version", 1, timeout=20)
    assert device.starts == 2


def test_disk_full_is_reported(local_cloud, device_factory, tmp_path, device_run):
    # RLIMIT_FSIZE stands in for a full disk: a write past it fails (EFBIG) as one past
    # the end of the disk would (ENOSPC); both are StorageEnd (-15).
    import resource

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (40000, 40000))

    dev = device_factory()
    root, sha1 = provision(tmp_path)
    device = device_run(dev, root, preexec=limit_file_size)
    wait_begin(local_cloud, dev, sha1)
    path, _ = pack_app(tmp_path, "big", example_app(2, padding=120000))
    expect_fail(local_cloud, dev, path, -15)
    assert device.proc.poll() is None and device.starts == 1
    assert open(os.path.join(root, "state")).read().count("sha=%s" % sha1.hex()) == 1
    assert not os.listdir(os.path.join(root, "b")) if os.path.exists(os.path.join(root, "b")) else True


def test_a_version_that_crashes_at_start_is_rolled_back(local_cloud, device_factory, tmp_path, device_run):
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    device = device_run(dev, root, OTA_TRIAL_BOOTS=1)
    wait_begin(local_cloud, dev, sha1)
    path, _ = pack_app(tmp_path, "crash", example_app(2, crash=True))
    since = local_cloud.mark(dev)
    ota_id = local_cloud.send_ota(dev, path)
    local_cloud.wait_ota(dev, "Reboot", ota_id, since=since)
    # version 2 dies at start (once allowed), the next start goes back to version 1
    assert local_cloud.wait_ota(dev, "Fail", ota_id, since=since, timeout=40)["state_data"] == -205
    wait_begin(local_cloud, dev, sha1, since=since)
    local_cloud.wait_for(dev, "version", 1, timeout=20)
    assert local_cloud.ota_sha(dev) == sha1.hex()
    # execv into version 2 (its one allowed start) -> exit 1 -> started again: rolled back
    assert device.starts == 2 and device.exits == [1], device.exits
    assert "version 2 fails at start" in device.output()


def test_a_version_that_cannot_attach_is_rolled_back(local_cloud, device_factory, tmp_path, device_run):
    # Version 2 has a wrong device id: it starts and logs in, but never attaches
    # (a wrong password would make start() raise at once, a crash at start).  After
    # OTA_TRIAL_SECONDS it restarts; that start is one more than allowed: back to 1.
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    device = device_run(dev, root, OTA_TRIAL_BOOTS=1, OTA_TRIAL_SECONDS=3)
    wait_begin(local_cloud, dev, sha1)
    path, _ = pack_app(tmp_path, "noattach", example_app(2, wrong_device_id=True))
    since = local_cloud.mark(dev)
    ota_id = local_cloud.send_ota(dev, path)
    local_cloud.wait_ota(dev, "Reboot", ota_id, since=since)
    assert local_cloud.wait_ota(dev, "Fail", ota_id, since=since, timeout=40)["state_data"] == -205
    wait_begin(local_cloud, dev, sha1, since=since)
    local_cloud.wait_for(dev, "version", 1, timeout=20)
    assert device.starts == 1 and device.exits == [], "restarted in place both times"
    assert "did not attach within 3 s" in device.output()


def test_a_version_with_a_wrong_password_is_rolled_back(local_cloud, device_factory, tmp_path, device_run):
    # start() raises ConnectRefused at once (the first attach fails fast on
    # what retrying cannot fix): version 2 dies at start and is rolled back.
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    device = device_run(dev, root, OTA_TRIAL_BOOTS=1)
    wait_begin(local_cloud, dev, sha1)
    path, _ = pack_app(tmp_path, "badpassword", example_app(2, wrong_password=True))
    since = local_cloud.mark(dev)
    ota_id = local_cloud.send_ota(dev, path)
    local_cloud.wait_ota(dev, "Reboot", ota_id, since=since)
    assert local_cloud.wait_ota(dev, "Fail", ota_id, since=since, timeout=40)["state_data"] == -205
    wait_begin(local_cloud, dev, sha1, since=since)
    local_cloud.wait_for(dev, "version", 1, timeout=20)
    assert device.starts == 2 and device.exits == [1], device.exits
    assert "ConnectRefused" in device.output()


def test_micropython_rolls_back_a_version_that_crashes(local_cloud, device_factory, tmp_path, device_run):
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    device = device_run(dev, root, runtime="micropython", OTA_TRIAL_BOOTS=1)
    wait_begin(local_cloud, dev, sha1, timeout=40)
    path, _ = pack_app(tmp_path, "crash", example_app(2, crash=True))
    since = local_cloud.mark(dev)
    ota_id = local_cloud.send_ota(dev, path)
    assert local_cloud.wait_ota(dev, "Fail", ota_id, since=since, timeout=60)["state_data"] == -205
    wait_begin(local_cloud, dev, sha1, since=since, timeout=40)
    assert device.exits == [0, 1], "exit 0 to restart, then version 2 dies: %s" % device.exits


def test_an_update_survives_a_broker_restart(local_cloud, device_factory, tmp_path, device_run):
    dev = device_factory()
    root, sha1 = provision(tmp_path)
    device_run(dev, root, OTA_CHUNK=8192)
    wait_begin(local_cloud, dev, sha1)
    path, sha2 = pack_app(tmp_path, "v2", example_app(2, padding=60000))
    since = local_cloud.mark(dev)
    url = local_cloud.serve_ota(path, dev, rate=15000)
    ota_id = local_cloud.send_ota(dev, path, url=url)
    local_cloud.wait_ota(dev, "Fetch", ota_id, since=since)
    local_cloud.restart_broker()
    local_cloud.set_ota_faults(url)  # full speed again
    wait_begin(local_cloud, dev, bytes.fromhex(sha2), since=since, timeout=60)
    local_cloud.wait_for(dev, "version", 2, timeout=30)


def test_without_ota_the_device_answers_unavailable(local_cloud, device_factory, tmp_path):
    from arduino_iot_cloud import ArduinoCloudClient

    dev = device_factory()
    mark = local_cloud.mark(dev)
    client = ArduinoCloudClient(dev.device_id, password=dev.secret, server=local_cloud.host,
                                port=local_cloud.password_port, ssl_params={"cafile": local_cloud.ca_file},
                                sync_mode=True)
    client.start()
    try:
        path, _ = pack_app(tmp_path, "v2", example_app(2))
        ota_id = local_cloud.send_ota(dev, path)
        import time

        deadline = time.monotonic() + 10
        while not progress(local_cloud, dev, ota_id) and time.monotonic() < deadline:
            client.update()
            time.sleep(0.01)
        assert progress(local_cloud, dev, ota_id) == [("OTAUnavailable", 0)]
        assert not [e for e in local_cloud.events(dev, mark) if e[0] == "ota_begin"], "no OtaBeginUp without ota="
    finally:
        client.stop()


def test_paho_transport_and_a_restart_of_ones_own(local_cloud, device_factory, tmp_path):
    # In-process, sync mode, paho doing the MQTT; restart= replaces the default.
    import time

    pytest.importorskip("paho.mqtt")
    from arduino_iot_cloud import ArduinoCloudClient
    from arduino_iot_cloud.ota import OTA, app_dir, slots

    dev = device_factory()
    root, sha1 = provision(tmp_path)
    restarted = []
    client = ArduinoCloudClient(dev.device_id, password=dev.secret, server=local_cloud.host,
                                port=local_cloud.password_port, ssl_params={"cafile": local_cloud.ca_file},
                                sync_mode=True, transport="paho",
                                ota=OTA(str(root), restart=lambda: restarted.append(1)))
    client.start()
    try:
        wait_begin(local_cloud, dev, sha1)
        path, sha2 = pack_app(tmp_path, "v2", example_app(2))
        ota_id = local_cloud.send_ota(dev, path)
        deadline = time.monotonic() + 30
        while not restarted and time.monotonic() < deadline:
            client.update()
            time.sleep(0.002)
        assert restarted == [1], progress(local_cloud, dev, ota_id)
        # The restart waited for the broker's PUBACK of the Reboot report; the cloud's
        # emulator reads it from the broker a moment later.
        local_cloud.wait_ota(dev, "Reboot", ota_id, timeout=10)
        assert progress(local_cloud, dev, ota_id)[-1] == ("Reboot", 0)
        assert slots.read_state(str(root))["trial"] == 1
        assert open(os.path.join(app_dir(str(root)), "main.py")).read().count("VERSION = 2") == 1
    finally:
        client.stop()
