# Run by test_mpy_first_attach.py under micropython, against the local cloud:
#   CASE=refused  a wrong password: start() raises ConnectRefused at once
#   CASE=events   on_connect, on_attach, then on_disconnect(None) after stop()
#   CASE=silent   right username, wrong device id: a warning, then AttachTimeout
# SYNC=1 for sync mode.  Prints one line per fact, "DONE" at the end.
import time
from os import getenv

from arduino_iot_cloud import ArduinoCloudClient
from arduino_iot_cloud.errors import AttachTimeout, ConnectRefused

case = getenv("CASE")
sync = getenv("SYNC") == "1"
username = getenv("DEVICE_ID")
device_id = "00000000-0000-4000-8000-0000000000f3" if case == "silent" else username
password = "Wrong-password" if case == "refused" else getenv("SECRET_KEY")
client = ArduinoCloudClient(device_id, username=username, password=password, sync_mode=sync,
                            reconnect_cap=1.0)


def on_connect(c):
    print("EVENT connect", c.connected)
    raise ValueError("a failing callback costs nothing")


client.on_connect = on_connect
client.on_attach = lambda c: print("EVENT attach", c.thing_id)
client.on_disconnect = lambda c, error: print("EVENT disconnect", type(error).__name__)

if case == "events" and not sync:
    async def main():
        import asyncio

        async def stop_when_attached():
            while not client.connected:
                await asyncio.sleep(0.01)
            client.stop()
        asyncio.create_task(stop_when_attached())
        await client.run()
    import asyncio
    asyncio.run(main())
else:
    t0 = time.time()
    try:
        client.start(timeout=float(getenv("TIMEOUT") or 20))
        print("ATTACHED", client.thing_id)
        client.stop()
    except ConnectRefused as e:
        print("RAISED ConnectRefused", e.code, e.permanent, "after %d s" % (time.time() - t0))
    except AttachTimeout as e:
        print("RAISED AttachTimeout", e)
print("DONE")
