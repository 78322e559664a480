# Issue 15 items 2, 3 and 6, by plain calls (pytest and `micropython
# tests/mpy_run.py`): which refusals retrying cannot fix, the warning when a
# login brings no thing id, and the session's connection events.

from arduino_iot_cloud import commands, senml
from arduino_iot_cloud import session as session_module
from arduino_iot_cloud.errors import ConnectRefused, RemoteError, TransportError
from arduino_iot_cloud.records import Registry
from arduino_iot_cloud.session import SILENCE_WARN_MS, WAIT_THING, DeviceSession
from arduino_iot_cloud.net.connection import tls_error

import util

DEV = "d3f0b2c8-0000-4000-8000-000000000015"
THING = "7a1c2e44-0000-4000-8000-0000000000bb"


class Link(util.Link):
    def thing_begins(self):
        begin = commands.thing_begin("")
        return [pl for t, pl in self.pubs if t.endswith("/c/up") and pl == begin]


class Lines:
    """Stands for the session module's logger."""

    def __init__(self):
        self.lines = []

    def _add(self, msg, *args):
        self.lines.append(msg % args if args else msg)

    warning = error = info = debug = _add

    def warnings_about_thing(self):
        return [ln for ln in self.lines if "no thing id" in ln]


def _connected(now=0):
    s = DeviceSession(DEV, Registry(), "client", "2.0.0-sync")
    link = Link()
    s.on_connected(link, now)
    return s, link


def _with_log(fn):
    saved = session_module.log
    session_module.log = lines = Lines()
    try:
        fn()
    finally:
        session_module.log = saved
    return lines


# --- item 2: what retrying cannot fix -------------------------------------------------------

def test_credential_refusals_are_permanent_the_others_are_not():
    assert [ConnectRefused(code).permanent for code in (1, 2, 3, 4, 5, 6)] == \
        [False, True, False, True, True, False]
    assert RemoteError("x").permanent is False
    assert TransportError("connection lost").permanent is False


def test_a_broker_alert_refusing_our_certificate_is_permanent():
    refused = tls_error(OSError("[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca"), "h", 1)
    assert refused.permanent and "refused this device's client certificate" in str(refused)
    required = tls_error(OSError("[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required"),
                         "h", 1)
    assert required.permanent
    # A broker certificate we do not trust may be a captive portal, or a clock set late: retried.
    untrusted = tls_error(OSError("[SSL: CERTIFICATE_VERIFY_FAILED] unable to get local issuer certificate"),
                          "h", 1)
    assert untrusted is not None and not untrusted.permanent
    expired = tls_error(OSError("certificate has expired"), "h", 1)
    assert not expired.permanent


# --- item 3: a login that brings no thing id -----------------------------------------------

def test_silence_after_login_warns_once_with_the_likely_cause_and_keeps_asking():
    s, link = _connected(0)
    state = {}

    def run():
        deadlines = []
        now = 0
        while now < 70000:
            d = s.poll(now)
            deadlines.append(d)
            now = d
        state["deadlines"] = deadlines

    lines = _with_log(run)
    warned = lines.warnings_about_thing()
    assert len(warned) == 1, lines.lines
    assert "device id may not match" in warned[0] and "no thing in the cloud" in warned[0], warned[0]
    assert "still waiting" in warned[0]
    # The session asked for its warning time: the warning is on time, not at the next ThingBegin.
    assert SILENCE_WARN_MS in state["deadlines"], state["deadlines"]
    # ThingBegin went on with backoff (0, 2, 6, 14, 30, 62 s), before and after the warning.
    assert len(link.thing_begins()) == 6, len(link.thing_begins())
    assert s.state == WAIT_THING


def test_no_warning_before_the_bound_nor_once_attached():
    s, link = _connected(0)

    def run():
        s.poll(SILENCE_WARN_MS - 1)
        s.on_message("/a/d/%s/e/i" % DEV, senml.encode((("thing_id", THING),)), SILENCE_WARN_MS - 1)
        s.poll(SILENCE_WARN_MS + 60000)

    assert _with_log(run).warnings_about_thing() == []


def test_an_answer_without_a_thing_gives_the_other_cause():
    s, link = _connected(0)

    def run():
        s.on_message("/a/d/%s/e/i" % DEV, senml.encode((("thing_id", ""),)), 100)
        s.poll(2000)
        s.poll(SILENCE_WARN_MS)

    warned = _with_log(run).warnings_about_thing()
    assert len(warned) == 1 and "has no thing" in warned[0] and "device id may not match" not in warned[0], warned


def test_every_connection_gets_its_own_warning():
    s, link = _connected(0)

    def run():
        s.poll(SILENCE_WARN_MS)
        s.on_disconnected(TransportError("lost"))
        s.on_connected(Link(), 20000)
        s.poll(20000 + SILENCE_WARN_MS - 1)
        s.poll(20000 + SILENCE_WARN_MS)

    assert len(_with_log(run).warnings_about_thing()) == 2


# --- item 6: connection events ---------------------------------------------------------------

def test_events_follow_the_link_and_the_attach_in_order():
    s, link = _connected(0)
    s.on_message("/a/d/%s/e/i" % DEV, senml.encode((("thing_id", THING),)), 10)
    s.on_message("/a/t/%s/shadow/i" % THING, senml.encode(()), 20)
    lost = TransportError("connection lost")
    s.on_disconnected(lost)
    s.on_disconnected(TransportError("again"))  # no link any more: no second event
    assert s.events == [("on_connect",), ("on_attach",), ("on_disconnect", lost)]


def test_a_link_that_never_logged_in_gives_no_disconnect_event():
    s = DeviceSession(DEV, Registry(), "client", "2.0.0-sync")
    s.on_disconnected(ConnectRefused(5))
    s.on_disconnected(None)
    assert s.events == []


def test_a_requested_disconnect_carries_no_error():
    s, link = _connected(0)
    s.on_disconnected()
    assert s.events == [("on_connect",), ("on_disconnect", None)]
