"""Fixtures of the browser tests: the local cloud's dashboard, a headless Chromium
(selenium) with the dashboard open, and devices of this library in threads.

Skipped when Chromium, chromium-driver, selenium or aiohttp are missing; with CI
set they fail instead, since CI installs all of them (.ci/setup).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from browser_helpers import DeviceThread, chromium, missing_parts  # noqa: E402

TEST_TIME_LIMIT = 90  # seconds, for a whole test (Chromium starts in a few seconds on a loaded machine)


@pytest.fixture
def time_limit():
    """Seconds a whole test here may take (the alarm is in tests/conftest.py)."""
    return TEST_TIME_LIMIT


@pytest.fixture(scope="session")
def browser_parts():
    why = missing_parts()
    if why:
        if os.environ.get("CI"):
            pytest.fail("CI must provide the browser test parts: " + why)
        pytest.skip(why)


@pytest.fixture(scope="session")
def dashboard(browser_parts, local_cloud):
    """The dashboard of the session's local cloud, on a free port."""
    from arduino_iot_cloud.localcloud.web import Dashboard

    dash = Dashboard(local_cloud).start()
    try:
        yield dash
    finally:
        dash.stop()


@pytest.fixture(scope="session")
def browser(browser_parts):
    """One headless Chromium for the session (a fresh page per test: see ``page``)."""
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser, dashboard):
    """The browser with the dashboard freshly loaded (token in the fragment) and live."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get("about:blank")
    browser.get(dashboard.login_url)
    WebDriverWait(browser, 15).until(lambda d: d.find_element("id", "link").text == "live")
    return browser


@pytest.fixture
def device_thread(local_cloud):
    """``device_thread(dev, setup)`` -> a running DeviceThread; stopped after the test."""
    made = []

    def make(dev, setup):
        d = DeviceThread(local_cloud, dev, setup)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()
