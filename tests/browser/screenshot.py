"""``make screenshot``: the dashboard with the demo device, taken by the same headless
Chromium the browser tests use, saved as docs/dashboard.png.

Runs ``localcloud demo`` in a temporary work directory, lets the demo device report
for a while (so its charts have a history), then photographs the whole page.
Usage: python tests/browser/screenshot.py [OUTPUT] [--settle SECONDS]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from browser_helpers import chromium, missing_parts  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=os.path.join(ROOT, "docs", "dashboard.png"))
    parser.add_argument("--settle", type=float, default=45.0, help="seconds of demo before the picture")
    args = parser.parse_args()
    why = missing_parts()
    if why:
        sys.exit("cannot take the screenshot: " + why)
    with tempfile.TemporaryDirectory() as workdir:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.join(ROOT, "src"), env.get("PYTHONPATH")) if p)
        demo = subprocess.Popen([sys.executable, "-m", "arduino_iot_cloud.localcloud", "--workdir", workdir, "demo"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        try:
            url = None
            while url is None:
                line = demo.stdout.readline()
                if not line:
                    sys.exit("the demo ended before printing the dashboard's address")
                m = re.search(r"(http://127\.0\.0\.1:\d+/#token=\S+)", line)
                url = m.group(1) if m else None
            print("demo running; waiting %.0f s for its charts to fill" % args.settle, flush=True)
            time.sleep(args.settle)
            driver = chromium(1280, 900)
            try:
                driver.get(url)
                time.sleep(3)
                height = driver.execute_script("return document.documentElement.scrollHeight")
                driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {  # the whole page, no scrollbar
                    "width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": False})
                time.sleep(1)
                os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
                driver.save_screenshot(args.output)
            finally:
                driver.quit()
        finally:
            demo.terminate()
            demo.wait(15)
    print("saved", args.output)


if __name__ == "__main__":
    main()
