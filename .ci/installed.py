"""Exit 0 when this checkout is installed (editable) with every requirement of the
extras named on the command line, so `.ci/setup` can stay quiet; 1 otherwise."""

import json
import os
import re
import sys
from importlib import metadata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def installed_here(dist):
    text = dist.read_text("direct_url.json")
    if not text:
        return False
    url = json.loads(text).get("url", "")
    return url.rstrip("/") == "file://" + ROOT


def main(extras):
    try:
        dist = metadata.distribution("arduino-iot-cloud")
    except metadata.PackageNotFoundError:
        return 1
    if not installed_here(dist):
        return 1
    for req in dist.requires or []:
        name, _, marker = req.partition(";")
        extra = re.search(r'extra\s*==\s*"([^"]+)"', marker)
        if extra and extra.group(1) not in extras:
            continue
        project = re.match(r"[A-Za-z0-9._-]+", name.strip()).group(0)
        try:
            metadata.version(project)
        except metadata.PackageNotFoundError:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
