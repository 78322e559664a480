"""``python -m arduino_iot_cloud.localcloud``: see :mod:`.cli`."""

import sys

from .cli import main

sys.exit(main())
