# TEST DOUBLE of the `se05x` module of MicroPython boards with an NXP SE05x
# secure element (no such hardware is available to the test suite).  It
# keeps objects in a dict and records every call; sign() returns a marked,
# fake signature (it does no cryptography).  Used by tests/core/test_se05x.py
# under CPython and the MicroPython unix port.

objects = {}  # object id -> bytes stored in the "chip"
calls = []    # ("init",), ("read", id, size), ("sign", id, digest)


def reset():
    objects.clear()
    del calls[:]


class SE05X:
    def __init__(self):
        calls.append(("init",))

    def read(self, object_id, size):
        calls.append(("read", object_id, size))
        if object_id not in objects:
            raise OSError("no object 0x%08x" % object_id)
        return objects[object_id][:size]

    def sign(self, object_id, digest):
        calls.append(("sign", object_id, bytes(digest)))
        return b"FAKE-SIGNATURE:" + object_id.to_bytes(4, "big") + bytes(digest)
