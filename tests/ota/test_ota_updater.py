"""The OTA object without a network: approval (on_request defers, then approves), the
checks made before any download, one update at a time, the reports queued while the
link is down, OtaBeginUp after an attach.  The session side is a recorded link."""

import cbor2

from arduino_iot_cloud.ota import OTA

DEV = "d3f0b2c8-0000-4000-8000-000000000001"
ID1, ID2 = b"\x01" * 16, b"\x02" * 16
AVAILABLE, START, FETCH, FAIL = 3, 4, 5, 8


class Link:
    def __init__(self):
        self.pubs = []

    def publish(self, topic, payload, qos=1):
        self.pubs.append((topic, cbor2.loads(payload)))

    def can_publish(self):
        return True


class Session:
    command_up = "/a/d/%s/c/up" % DEV

    def __init__(self):
        self.link = None


class Client:
    def __init__(self):
        self.session = Session()
        self.engine = None


def make(tmp_path, **kw):
    ota = OTA(str(tmp_path / "root"), **kw)
    client = Client()
    ota.bind(client)
    return ota, client


def reports(link):
    return [(o.tag, list(o.value)) for _, o in link.pubs]


def progress(link):
    return [(v[0], v[1].value, v[2]) for tag, v in reports(link) if tag == 0x010200]


def test_on_request_defers_until_it_approves(tmp_path):
    asked = []

    def on_request(client, request):
        asked.append(request.url)
        return len(asked) >= 3

    ota, client = make(tmp_path, on_request=on_request, retries=0, retry_ms=10)
    link = client.session.link = Link()
    ota.on_update_command((ID1, "https://127.0.0.1:1/x.ota", bytes(32), bytes(32)), 0)
    ota.step(0)
    ota.step(10)
    assert progress(link) == [(ID1, AVAILABLE, 0)] and len(asked) == 2
    ota.step(20)
    assert len(asked) == 3 and progress(link)[1] == (ID1, START, 0)
    for t in range(30, 2000, 10):  # connection refused, no retries: ServerConnect
        ota.step(t)
        if not ota.busy:
            break
    assert progress(link)[-1] == (ID1, FAIL, -10)


def test_checks_before_the_download(tmp_path):
    ota, client = make(tmp_path)
    link = client.session.link = Link()
    ota.on_update_command((ID1, "http://127.0.0.1/x.ota", bytes(32), bytes(32)), 0)
    ota.step(0)
    ota.on_update_command((ID2, "https://127.0.0.1/x.ota", b"\x05" * 32, bytes(32)), 1)
    ota.step(1)
    assert [p for p in progress(link) if p[1] == FAIL] == [(ID1, FAIL, -9), (ID2, FAIL, -202)]
    assert not ota.busy and ota.last_error.code == -202


def test_one_update_at_a_time_and_reports_wait_for_the_link(tmp_path):
    ota, client = make(tmp_path, on_request=lambda c, r: False)
    ota.on_update_command((ID1, "https://127.0.0.1/x.ota", bytes(32), bytes(32)), 0)
    ota.on_update_command((ID2, "https://127.0.0.1/y.ota", bytes(32), bytes(32)), 1)
    ota.step(2)  # no link: nothing sent, nothing lost
    link = client.session.link = Link()
    ota.step(3)
    assert progress(link) == [(ID1, AVAILABLE, 0), (ID2, FAIL, -204)]
    times = [v[3] for tag, v in reports(link)]
    assert times[0] < times[1]


def test_ota_begin_after_every_attach(tmp_path):
    ota, client = make(tmp_path)
    link = client.session.link = Link()
    ota.on_attached(0)
    ota.on_attached(1)
    ota.step(2)
    assert reports(link) == [(0x010000, [bytes(32)]), (0x010000, [bytes(32)])]


def test_a_restart_that_returns_leaves_the_object_idle(tmp_path, monkeypatch):
    restarts = []
    ota, client = make(tmp_path, restart=lambda: restarts.append(1), trial_seconds=0.05)
    from arduino_iot_cloud.ota import slots

    monkeypatch.setattr(slots, "read_state", lambda root: {"trial": 1})
    ota.step(0)     # on trial, not attached
    ota.step(100)   # past trial_seconds: restart
    assert restarts == [1] and not ota.busy
    ota.step(200)
    assert restarts == [1]


def test_fetch_is_reported_at_the_start_then_at_most_every_progress_ms(tmp_path):
    from arduino_iot_cloud.ota import updater

    class SlowDownload:
        offset = 0

        def step(self, now):
            self.offset += 1000
            return False

        def close(self):
            pass

    ota, client = make(tmp_path, progress_ms=10000)
    link = client.session.link = Link()
    ota.request = updater.Request(ID1, "https://h/x", bytes(32), bytes(32))
    ota.state = updater.FETCHING
    ota._download = SlowDownload()
    ota._next_progress = 0
    for now in range(0, 25001, 100):
        ota.step(now)
    fetches = [data for i, state, data in progress(link) if state == FETCH]
    assert fetches == [1000, 101000, 201000]


def test_a_damaged_pointer_file_does_not_stop_the_attach(tmp_path):
    ota, client = make(tmp_path)
    os_root = tmp_path / "root"
    os_root.mkdir()
    (os_root / "state").write_text("active=zz\nsha=nothex\n")
    link = client.session.link = Link()
    ota.on_attached(0)
    ota.step(1)
    assert reports(link) == [(0x010000, [bytes(32)])]
