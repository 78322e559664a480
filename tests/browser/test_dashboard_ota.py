"""The dashboard's OTA slot in a real headless Chromium: a device running
examples/ota_device.py (the example application, version 1) on the local cloud;
the page uploads version 2's OTA file, shows the device's progress as it comes,
and the devices table shows the SHA-256 the device reports after its restart."""

import os
import shutil
import subprocess
import sys

from selenium.webdriver.common.by import By
from test_dashboard import WAIT, wait

from arduino_iot_cloud.ota import install_file, pack

ROOT_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLE_APP = os.path.join(ROOT_DIR, "examples", "ota_app")


def app_version(tmp_path, version):
    """The example application at `version`, packed: (OTA file path, payload SHA-256 hex)."""
    app = tmp_path / ("app%d" % version)
    shutil.copytree(EXAMPLE_APP, str(app))
    main = app / "main.py"
    main.write_text(main.read_text().replace("VERSION = 1\n", "VERSION = %d\n" % version))
    out = tmp_path / ("app%d.ota" % version)
    return out, pack.pack_file(str(app), str(out))


def test_upload_an_ota_file_and_watch_it(page, local_cloud, device_factory, tmp_path):
    dev = device_factory()
    root = tmp_path / "otaroot"
    v1, sha1 = app_version(tmp_path, 1)
    v2, sha2 = app_version(tmp_path, 2)
    assert install_file(str(root), str(v1)).hex() == sha1
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARDUINO_IOT_CLOUD_")}
    env.update(local_cloud.env(dev))
    env.update({"DEVICE_ID": dev.device_id, "SECRET_KEY": dev.secret, "OTA_ROOT": str(root),
                "PYTHONUNBUFFERED": "1", "OTA_CHUNK": "4096",
                "PYTHONPATH": os.pathsep.join(p for p in (os.path.join(ROOT_DIR, "src"),
                                                          os.environ.get("PYTHONPATH")) if p)})
    log = open(str(tmp_path / "device.log"), "wb")
    device = subprocess.Popen([sys.executable, os.path.join(ROOT_DIR, "examples", "ota_device.py")], env=env,
                              stdout=log, stderr=subprocess.STDOUT, cwd=ROOT_DIR)
    try:
        row = 'tr[data-device="%s"]' % dev.device_id
        card = 'section.card[data-device="%s"]' % dev.device_id

        def sha_cell(p):
            cells = p.find_elements(By.CSS_SELECTOR, row + " td code[title]")
            return [c.get_attribute("title") for c in cells]

        wait(page, lambda p: sha1 in sha_cell(p), "version 1's SHA-256 in the devices table", timeout=30)
        mark = local_cloud.mark(dev)
        page.find_element(By.CSS_SELECTOR, card + " input.ota-file").send_keys(str(v2))
        page.find_element(By.CSS_SELECTOR, card + " button.ota").click()
        ota_id = local_cloud.wait_event(dev, "ota_sent", since=mark)["id"]

        def states(p):
            return [li.get_attribute("data-state") for li in p.find_elements(By.CSS_SELECTOR, card + " .ota-log li")]

        wait(page, lambda p: "Reboot" in states(p), "the device's progress up to Reboot", timeout=30)
        shown = states(page)
        assert shown[:4] == ["sent", "OtaAvailable", "StartOTA", "Fetch"], shown
        assert shown[-2:] == ["FlashOTA", "Reboot"], shown
        assert [p["state"] for k, p in local_cloud.events(dev, since=mark)
                if k == "ota_progress" and p["id"] == ota_id] == shown[1:], "each report shown once, in order"
        wait(page, lambda p: sha2 in sha_cell(p), "version 2's SHA-256 in the devices table", timeout=WAIT)
        assert "Reboot" in page.find_element(By.CSS_SELECTOR, card + " .ota-state").text
        local_cloud.wait_for(dev, "version", 2, timeout=20)
    finally:
        device.terminate()
        try:
            device.wait(10)
        except subprocess.TimeoutExpired:
            device.kill()
        log.close()
        print(open(str(tmp_path / "device.log")).read()[-3000:])
