"""python -m arduino_iot_cloud.ota: build or install an OTA file.

  pack APP_DIR -o FILE   pack an application directory into an OTA file
  install ROOT FILE      install an OTA file under ROOT and make it active
"""

import argparse
import sys
from binascii import hexlify
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arduino_iot_cloud.ota",
                                     description="Build or install over-the-air update files.")
    sub = parser.add_subparsers(dest="command", required=True)
    pack = sub.add_parser("pack", help="pack APP_DIR into an OTA file")
    pack.add_argument("app_dir")
    pack.add_argument("-o", "--output", required=True, help="the OTA file to write")
    install = sub.add_parser("install", help="install an OTA file under ROOT (first provisioning)")
    install.add_argument("root")
    install.add_argument("file")
    args = parser.parse_args(argv)
    if args.command == "pack":
        from arduino_iot_cloud.ota.pack import PackError, pack_file

        try:
            sha = pack_file(args.app_dir, args.output)
        except PackError as e:
            print("error: %s" % e, file=sys.stderr)
            return 2
        except OSError as e:
            print("error: cannot pack %s into %s: %s" % (args.app_dir, args.output, e.strerror or e),
                  file=sys.stderr)
            return 2
        print("wrote %s (payload SHA-256 %s)" % (args.output, sha))
        return 0
    from arduino_iot_cloud.ota import install_file
    from arduino_iot_cloud.ota.errors import OtaError

    try:
        sha = install_file(args.root, args.file)
    except OtaError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    print("installed %s under %s (sha256 %s)" % (args.file, args.root, hexlify(sha).decode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
