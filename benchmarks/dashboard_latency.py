"""Dashboard latency: from a device setting a value to the value shown in a headless Chromium.

    python benchmarks/dashboard_latency.py            # 200 values
    python benchmarks/dashboard_latency.py --count 5  # a quick check that it still runs

One LocalCloud (real mosquitto, TLS on 127.0.0.1) with its dashboard, one device of this
library in sync mode (update() every 5 ms in a thread), one page.  For each value: the
wall-clock time just before ``client["x"] = v``, and the page's own wall-clock time
(performance.timeOrigin + now) when a MutationObserver sees the tile show it.  Both
clocks are the same machine's.  The path measured: the device's next update() and publish,
mosquitto, the emulator, the dashboard's push (coalesced every 50 ms), the WebSocket, the
page's rendering.  Prints p50, p90, p99 and max in milliseconds; asserts nothing.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "src"))
sys.path.insert(0, os.path.join(ROOT, "tests", "browser"))

from browser_helpers import DeviceThread, chromium, missing_parts  # noqa: E402

# Resolves with the page's wall-clock time (ms) once the tile of property x shows `want`.
_WAIT_FOR_TEXT = """
const [selector, want, done] = arguments;
const node = document.querySelector(selector);
const stamp = () => performance.timeOrigin + performance.now();
if (node.textContent === want) { done(stamp()); return; }
const seen = new MutationObserver(() => {
  if (node.textContent === want) { seen.disconnect(); done(stamp()); }
});
seen.observe(node, {childList: true, characterData: true, subtree: true});
"""


def percentile(samples, q):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser(description="device -> dashboard page latency")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between values")
    args = parser.parse_args()
    why = missing_parts()
    if why:
        sys.exit("cannot run: " + why)
    from arduino_iot_cloud.localcloud import LocalCloud
    from arduino_iot_cloud.localcloud.web import Dashboard

    with tempfile.TemporaryDirectory() as workdir, LocalCloud(workdir) as cloud:
        dev = cloud.add_device(properties={"x": 0})
        device = DeviceThread(cloud, dev, lambda client, writes: client.register("x", value=0))
        driver = None
        try:
            device.wait_attached()
            with Dashboard(cloud) as dashboard:
                driver = chromium()
                driver.set_script_timeout(10)
                driver.get(dashboard.login_url)
                selector = 'section.card[data-device="%s"] .prop[data-name="x"] .value' % dev.device_id
                deadline = time.monotonic() + 15
                while not driver.find_elements("css selector", selector):  # the page is still loading
                    if time.monotonic() > deadline:
                        sys.exit("the dashboard never showed the device's tile")
                    time.sleep(0.05)
                driver.execute_async_script(_WAIT_FOR_TEXT, selector, "0")
                samples = []
                for i in range(1, args.count + 1):
                    t0 = time.time()
                    device.set("x", i)
                    shown_ms = driver.execute_async_script(_WAIT_FOR_TEXT, selector, str(i))
                    samples.append(shown_ms - t0 * 1000)
                    time.sleep(args.gap)
        finally:
            if driver is not None:
                driver.quit()
            device.stop()
    load = os.getloadavg()[0]
    print("device -> page, %d values, %d CPUs, load %.1f: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms"
          % (len(samples), os.cpu_count() or 0, load, statistics.median(samples), percentile(samples, 90),
             percentile(samples, 99), max(samples)))


if __name__ == "__main__":
    main()
