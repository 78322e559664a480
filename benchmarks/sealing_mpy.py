# The MicroPython half of benchmarks/sealing.py: run under `micropython` with
# MICROPYPATH=src:.frozen; prints one line "RESULT <json>".
#   micropython benchmarks/sealing_mpy.py [iterations] [state directory]
import gc
import json
import os
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
STATE_DIR = sys.argv[2] if len(sys.argv) > 2 else "/tmp"
SECRET = bytes(range(32))
VALUE = "x" * 32  # a 32-byte value

import arduino_iot_cloud  # noqa: E402,F401  (the library itself: not counted)

gc.collect()
before_import = gc.mem_alloc()
from arduino_iot_cloud.sealing import SealingContext  # noqa: E402
from arduino_iot_cloud.sealing import backend as _backend, property as _property  # noqa: E402,F401

gc.collect()
import_bytes = gc.mem_alloc() - before_import

gc.collect()
before = gc.mem_alloc()
device = SealingContext(SECRET, b"dev", b"owner", volatile=True)
gc.collect()
context_bytes = gc.mem_alloc() - before
owner = SealingContext(SECRET, b"owner", b"dev", volatile=True)


def per_call_us(fn, items):
    t0 = time.ticks_us()
    for item in items:
        fn(item)
    return time.ticks_diff(time.ticks_us(), t0) / len(items)


seal_us = per_call_us(lambda _: device.seal("v", VALUE), range(N))
texts = [device.seal("v", VALUE) for _ in range(N)]
unseal_us = per_call_us(lambda t: owner.unseal("v", t), texts)

# With state files: sealing writes once per reserved block, unsealing once per message.
paths = [STATE_DIR + "/bench-%s.json" % side for side in ("dev", "owner")]
for p in paths:
    try:
        os.remove(p)
    except OSError:
        pass
device_f = SealingContext(SECRET, b"dev", b"owner", state_path=paths[0], new_state=True)
owner_f = SealingContext(SECRET, b"owner", b"dev", state_path=paths[1], new_state=True)
seal_file_us = per_call_us(lambda _: device_f.seal("v", VALUE), range(N))
texts = [device_f.seal("v", VALUE) for _ in range(N)]
unseal_file_us = per_call_us(lambda t: owner_f.unseal("v", t), texts)
for p in paths:
    os.remove(p)

print("RESULT " + json.dumps({"n": N, "seal_us": seal_us, "unseal_us": unseal_us, "seal_file_us": seal_file_us,
                              "unseal_file_us": unseal_file_us, "import_bytes": import_bytes,
                              "context_bytes": context_bytes, "sealed_len": len(texts[0])}))
