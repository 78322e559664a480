"""Entry point of the ``arduino-localcloud`` command.

It lives outside the :mod:`.localcloud` package so that, on an install without
the ``localcloud`` extra, the command prints one line naming the extra instead
of a traceback (importing the package itself needs paho-mqtt).
"""

import sys

EXTRA_HINT = ("the local cloud needs paho-mqtt, which the device library does not: "
              "pip install 'arduino-iot-cloud[localcloud]'")


def main() -> int:
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        print("error: %s" % EXTRA_HINT, file=sys.stderr)
        return 2
    from .localcloud.cli import main as cli_main
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
