"""python -m arduino_iot_cloud.sealing: make a sealing context, seal and unseal values.

  new --out DIR        a random secret and salt in DIR/device.json and DIR/owner.json
                       (mode 0600; each holds the secret, the ids and that side's state)
  new --print          print a random secret and salt once (hex); nothing is written
  seal --context FILE NAME VALUE     print the sealed text of VALUE for property NAME
  unseal --context FILE NAME TEXT    print the value (JSON) of a sealed text

VALUE is read as JSON when it is JSON (true, 42, 21.5, "text"), else as a string.
CPython only (argparse); the device side is SealingContext.from_file(path).
"""

import argparse
import binascii
import json
import os
import sys
from typing import List, Optional

from ..errors import CloudError
from . import SealingContext
from .state import write_file

SECRET_LEN = 32
SALT_LEN = 8


def _hex(b: bytes) -> str:
    return binascii.hexlify(b).decode()


def _context_file(secret: bytes, salt: bytes, sender: bytes, recipient: bytes) -> str:
    return json.dumps({"master_secret": _hex(secret), "master_salt": _hex(salt), "sender_id": _hex(sender),
                       "recipient_id": _hex(recipient), "seq_limit": 0}, indent=1)


def _new(args: argparse.Namespace) -> int:
    device_id, owner_id = args.device_id.encode(), args.owner_id.encode()
    if not 0 < len(device_id) <= 7 or not 0 < len(owner_id) <= 7 or device_id == owner_id:
        raise SystemExit("--device-id and --owner-id: 1 to 7 bytes each, and different")
    secret, salt = os.urandom(SECRET_LEN), os.urandom(SALT_LEN)
    if args.print:
        print("master_secret %s" % _hex(secret))
        print("master_salt   %s" % _hex(salt))
        print("device: SealingContext(secret, %r, %r, master_salt=salt, state_path=..., new_state=True)"
              % (device_id, owner_id))
        print("owner:  SealingContext(secret, %r, %r, master_salt=salt, state_path=..., new_state=True)"
              % (owner_id, device_id))
        print("(printed once; new_state=True on the first run only)")
        return 0
    os.makedirs(args.out, exist_ok=True)
    paths = [os.path.join(args.out, "device.json"), os.path.join(args.out, "owner.json")]
    for path in paths:
        if os.path.exists(path):
            raise SystemExit("%s exists: refusing to replace a context (its state would be lost)" % path)
    write_file(paths[0], _context_file(secret, salt, device_id, owner_id))
    write_file(paths[1], _context_file(secret, salt, owner_id, device_id))
    print("wrote %s (copy it to the device, e.g. as sealing.json) and %s (keep it with the owner's "
          "scripts); both mode 0600" % tuple(paths))
    return 0


def _parse_value(text: str):
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if type(value) in (bool, int, float, str) else text


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arduino_iot_cloud.sealing",
                                     description="Sealed properties: contexts, seal, unseal.")
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="a new random secret and salt")
    where = new.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="directory for device.json and owner.json (mode 0600)")
    where.add_argument("--print", action="store_true", help="print the secret once instead")
    new.add_argument("--device-id", default="dev", help="the device's id (default: dev)")
    new.add_argument("--owner-id", default="owner", help="the owner's id (default: owner)")
    for name, what in (("seal", "VALUE"), ("unseal", "TEXT")):
        p = sub.add_parser(name, help="%s a value" % name)
        p.add_argument("--context", required=True, help="a context file made by `new`")
        p.add_argument("name", help="the property name")
        p.add_argument("value", metavar=what)
    args = parser.parse_args(argv)
    try:
        if args.command == "new":
            return _new(args)
        ctx = SealingContext.from_file(args.context)
        if args.command == "seal":
            print(ctx.seal(args.name, _parse_value(args.value)))
        else:
            print(json.dumps(ctx.unseal(args.name, args.value)))
        return 0
    except CloudError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
