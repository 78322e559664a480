"""The dashboard in a real headless Chromium, with this library's real devices on the
local cloud: devices listed as they attach, values pushed live, writes that reach the
device's on_write, values shown as text, charts that grow, and the cloud's commands."""

import base64
import time

import cbor2
import pytest
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 15.0


def wait(driver, predicate, what, timeout=WAIT, poll=0.02):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=poll,  # the page rebuilds rows as they change
                             ignored_exceptions=[StaleElementReferenceException]).until(lambda d: predicate(d))
    except TimeoutException:
        raise AssertionError("the page did not show %s within %.0f s; browser log: %s"
                             % (what, timeout, driver.get_log("browser"))) from None


def tile(driver, dev, name):
    return driver.find_element(By.CSS_SELECTOR, 'section.card[data-device="%s"] .prop[data-name="%s"]'
                               % (dev.device_id, name))


def tile_value(driver, dev, name):
    """The live value text of a property's tile, or None while it has no tile."""
    found = driver.find_elements(By.CSS_SELECTOR, 'section.card[data-device="%s"] .prop[data-name="%s"] .value'
                                 % (dev.device_id, name))
    return found[0].get_attribute("textContent") if found else None


def attached(device_factory, device_thread, properties, setup_extra=None, **kw):
    """A new device registering ``properties`` (name -> initial value), attached."""
    dev = device_factory(**kw)

    def setup(client, writes):
        for name, value in properties.items():
            client.register(name, value=value, on_write=lambda c, v, n=name: writes.put((n, v)))
        if setup_extra is not None:
            setup_extra(client, writes)

    d = device_thread(dev, setup)
    d.wait_attached()
    return dev, d


def test_page_lists_a_device_that_attaches(page, device_factory, device_thread):
    dev = device_factory(properties={"sw1": False})
    row = 'tr[data-device="%s"]' % dev.device_id
    # The device is known to the cloud, not connected yet: listed offline.
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, row), "the new device's row")
    assert page.execute_script("return document.querySelector(arguments[0]).innerText", row + " .pill") == "offline"

    d = device_thread(dev, lambda client, writes: client.register("sw1", value=None))
    d.wait_attached()
    wait(page, lambda p: p.find_element(By.CSS_SELECTOR, row + " .pill").text == "online", "the device online")
    # One look at the row (the page rebuilds it on every change).
    cells = page.execute_script("return [...document.querySelectorAll(arguments[0])].map(c => c.innerText)",
                                row + " td")
    titles = page.execute_script("return [...document.querySelectorAll(arguments[0])].map(c => c.title)",
                                 row + " td code")
    assert cells[1] == "password"
    assert titles == [dev.device_id, dev.thing_id]
    assert cells[4].startswith("2."), cells  # the library version from DeviceBegin
    assert cells[5] in ("just now", "1 s ago", "2 s ago"), cells  # last seen

    d.stop()
    wait(page, lambda p: p.find_element(By.CSS_SELECTOR, row + " .pill").text == "offline", "the device offline")


def test_a_published_value_appears_without_a_reload_within_a_second(page, device_factory, device_thread):
    dev, d = attached(device_factory, device_thread, {"temperature": 20.0})
    wait(page, lambda p: tile_value(p, dev, "temperature") == "20", "the first value")
    page.execute_script("window.notReloaded = true")
    for value in (21.25, -3.5, 1234.5):
        t0 = time.monotonic()
        d.set("temperature", value)
        wait(page, lambda p: tile_value(p, dev, "temperature") == str(value), "temperature %s" % value,
             timeout=5)
        elapsed = time.monotonic() - t0
        assert elapsed < 1.0, "%s took %.3f s from the device to the page" % (value, elapsed)
    assert page.execute_script("return window.notReloaded") is True


def test_toggling_a_switch_reaches_the_devices_on_write(page, device_factory, device_thread, local_cloud):
    dev, d = attached(device_factory, device_thread, {"sw1": False})
    wait(page, lambda p: tile_value(p, dev, "sw1") == "off", "sw1 off")
    switch = tile(page, dev, "sw1").find_element(By.CSS_SELECTOR, "label.switch")
    switch.click()
    assert d.writes.get(timeout=5) == ("sw1", True)
    assert local_cloud.get(dev, "sw1") is True
    wait(page, lambda p: tile_value(p, dev, "sw1") == "on", "sw1 on")
    switch.click()
    assert d.writes.get(timeout=5) == ("sw1", False)


def test_a_value_with_markup_is_shown_as_text(page, device_factory, device_thread):
    evil = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"><b>bold</b>'
    # (Thing ids are letters, digits and . _ : - only since the broker's ACL names them, so
    # the markup travels in a value, which a device can set to any string.)
    dev, d = attached(device_factory, device_thread, {"message": "hello"})
    wait(page, lambda p: tile_value(p, dev, "message") == "hello", "the first message")
    d.set("message", evil)
    wait(page, lambda p: tile_value(p, dev, "message") == evil, "the markup as text")
    box = tile(page, dev, "message")
    assert box.find_elements(By.CSS_SELECTOR, "script, img, b") == []
    assert box.find_element(By.CSS_SELECTOR, "input[type=text]").get_attribute("value") == evil
    assert page.find_elements(By.CSS_SELECTOR, "main script, main img") == []
    assert page.execute_script("return window.pwned") is None


def test_the_chart_grows_as_values_arrive(page, device_factory, device_thread, local_cloud):
    dev, d = attached(device_factory, device_thread, {"level": 1})
    local_cloud.wait_for(dev, "level", 1)
    svg = 'section.card[data-device="%s"] .prop[data-name="level"] svg.chart' % dev.device_id
    wait(page, lambda p: p.find_elements(By.CSS_SELECTOR, svg), "the chart")
    before = int(page.find_element(By.CSS_SELECTOR, svg).get_attribute("data-points"))
    assert before >= 1
    for i in range(2, 7):
        d.set("level", i * 10)
        local_cloud.wait_for(dev, "level", i * 10)  # one report each (the device sends changes only)
        wait(page, lambda p: int(p.find_element(By.CSS_SELECTOR, svg).get_attribute("data-points"))
             == before + i - 1, "%d chart points" % (before + i - 1))
    line = page.find_element(By.CSS_SELECTOR, svg + " polyline").get_attribute("points").split()
    assert len(line) == before + 5
    ys = [float(p.split(",")[1]) for p in line[-5:]]
    assert ys == sorted(ys, reverse=True), "rising values must climb in the chart (SVG y grows down)"
    assert "max 60" in tile(page, dev, "level").text


def test_widgets_follow_the_value_types(page, device_factory, device_thread, local_cloud):
    from arduino_iot_cloud import ColoredLight, Location, Schedule, Television

    # A sealed value: base64url of a COSE_Encrypt0 message (tag 16), as another engineer's sealing makes.
    sealed = base64.urlsafe_b64encode(cbor2.dumps(cbor2.CBORTag(16, [b"\xa1\x01\x03", {}, b"\x00" * 24])))
    sealed = sealed.decode().rstrip("=")

    def composites(client, writes):
        client.register(ColoredLight("lamp", swi=True, hue=120.0, sat=100.0, bri=50.0,
                                     on_write=lambda c, v: writes.put(("lamp", dict(hue=v.hue, sat=v.sat, bri=v.bri)))))
        client.register(Location("pos", lat=45.5, lon=7.25, on_write=lambda c, v: writes.put(("pos", (v.lat, v.lon)))))
        client.register(Television("tv", swi=False, vol=10, mut=False, pbc=7, inp=1, cha=3))
        client.register(Schedule("timer", frm=1700000000, to=0, len=60, msk=0))

    dev, d = attached(device_factory, device_thread, {"on": True, "n": 5, "text": "x", "secret": sealed},
                      setup_extra=composites)
    kinds = {"on": "switch", "n": "number", "text": "text", "secret": "sealed", "lamp": "colored_light",
             "pos": "location", "tv": "television", "timer": "schedule"}
    wait(page, lambda p: all(p.find_elements(By.CSS_SELECTOR, 'section.card[data-device="%s"] '
                                                              '.prop[data-name="%s"][data-widget="%s"]'
                                             % (dev.device_id, n, k)) for n, k in kinds.items()),
         "a tile of the right kind for every property")
    box = tile(page, dev, "secret")
    assert box.find_element(By.CSS_SELECTOR, ".value").text == "sealed value"
    assert box.find_element(By.CSS_SELECTOR, ".opaque").get_attribute("textContent") == sealed
    assert box.find_elements(By.CSS_SELECTOR, "input") == []  # locked: nothing to write with
    assert tile(page, dev, "lamp").find_element(By.CSS_SELECTOR, "input[type=color]").get_attribute("value") \
        == "#008000"  # hue 120 (green), full saturation, half brightness
    assert tile(page, dev, "tv").find_element(By.CSS_SELECTOR, "select").get_attribute("value") == "7"

    # The lat/lon fields write the Location to the device.
    pos = tile(page, dev, "pos")
    lat, lon = pos.find_elements(By.CSS_SELECTOR, "input[type=number]")
    lat.clear()
    lat.send_keys("-33.75")
    pos.find_element(By.TAG_NAME, "button").click()
    assert d.writes.get(timeout=5) == ("pos", (-33.75, 7.25))


def test_commands_detach_reassign_timezone(page, device_factory, device_thread, local_cloud):
    dev, d = attached(device_factory, device_thread, {"x": 1})
    card = 'section.card[data-device="%s"]' % dev.device_id
    wait(page, lambda p: tile_value(p, dev, "x") == "1", "the value")

    mark = local_cloud.mark(dev)
    page.find_element(By.CSS_SELECTOR, card + " .group input[type=number]").clear()
    page.find_element(By.CSS_SELECTOR, card + " .group input[type=number]").send_keys("5.5")
    page.find_element(By.CSS_SELECTOR, card + " button.timezone").click()
    offset, until = local_cloud.wait_event(dev, "timezone_sent", since=mark)
    assert offset == 5.5 * 3600 and until > time.time() + 300 * 86400
    deadline = time.monotonic() + WAIT
    while d.client["tz_offset"] != 19800:
        assert time.monotonic() < deadline, "the device did not get its new offset"
        time.sleep(0.02)

    page.find_element(By.CSS_SELECTOR, card + " input[aria-label='new thing id']").send_keys("thing-moved")
    page.find_element(By.CSS_SELECTOR, card + " button.reassign").click()
    local_cloud.wait_event(dev, "reassign", "thing-moved", since=mark)
    wait(page, lambda p: "thing-moved" in p.find_element(By.CSS_SELECTOR, card + " .thing").text, "the new thing")

    page.find_element(By.CSS_SELECTOR, card + " button.detach").click()
    local_cloud.wait_event(dev, "detach", since=mark)
    wait(page, lambda p: "detached" in p.find_element(By.CSS_SELECTOR, card + " .thing").text, "detached")
    assert page.find_elements(By.CSS_SELECTOR, card + " .prop") == []  # no thing, no properties



def test_a_refused_write_is_shown(page, device_factory, device_thread, local_cloud):
    dev, d = attached(device_factory, device_thread, {"n": 5})
    wait(page, lambda p: tile_value(p, dev, "n") == "5", "the value")
    mark = local_cloud.mark(dev)
    # The page only offers numbers for a number; a forged write shows the server's answer.
    page.execute_script("""
        fetch(arguments[0], {method: "POST", headers: {"Authorization": "Bearer wrong"}, body: "{}"})
          .then(r => r.json()).then(j => { window.answer = j.error; });""",
                        "/api/devices/%s/properties/n" % dev.device_id)
    wait(page, lambda p: p.execute_script("return window.answer"), "the refusal")
    assert "token" in page.execute_script("return window.answer")
    assert ("write", {"n": 5}) not in local_cloud.events(dev, since=mark)
    assert local_cloud.get(dev, "n") == 5


def test_refused_logins_are_listed(page, device_factory, local_cloud):
    import paho.mqtt.client as mqtt

    dev = device_factory()
    mark = local_cloud.broker_mark()
    intruder = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev.device_id)
    intruder.username_pw_set(dev.device_id, "not-the-secret")
    intruder.tls_set(ca_certs=local_cloud.ca_file)
    intruder.connect(local_cloud.host, local_cloud.password_port)
    try:
        intruder.loop_start()
        local_cloud.wait_broker_event("refused", since=mark)
    finally:
        intruder.loop_stop()
        intruder.disconnect()
    listener = "password (%d)" % local_cloud.password_port
    wait(page, lambda p: any(listener in row.text and "not authorised" in row.text
                             for row in p.find_elements(By.CSS_SELECTOR, "#refused tbody tr")), "the refusal")
    assert page.find_element(By.ID, "no-refused").is_displayed() is False


@pytest.mark.parametrize("token", ["not JSON", "", "wrong", None])
def test_the_live_stream_needs_the_token(dashboard, token):
    import asyncio

    import aiohttp

    async def run():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(dashboard.url + "api/live") as ws:
                if token == "not JSON":
                    await ws.send_str(token)
                else:
                    await ws.send_json({"token": token})
                msg = await ws.receive(timeout=15)
                return msg.type, ws.close_code

    kind, code = asyncio.run(run())
    assert kind == aiohttp.WSMsgType.CLOSE and code == 4401
