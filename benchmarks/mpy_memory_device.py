# The device side of benchmarks/mpy_memory.py: runs under the MicroPython unix
# port (micropython -X heapsize=N benchmarks/mpy_memory_device.py MODE) and
# prints "MEM <key> <bytes>" lines, and "PHASE <name>" lines the driver waits
# for.  Heap figures are gc.mem_alloc() right after gc.collect(): the heap in
# use, garbage excluded.
#
# Modes:
#   imports  MODULES...  import cost of each module, in the order given
#   run      the example device (examples/micropython_device.py) in sync or
#            async mode (SYNC_MODE): heap after imports, peak during attach,
#            peak and last in steady state; in sync mode then CHURN_MESSAGES
#            dashboard writes in and as many published values out, heap at
#            the start and end of that
#   min      attach over TLS and exchange values, then exit 0 (for bisecting
#            the smallest -X heapsize)

import gc
import sys
import time


def heap():
    gc.collect()
    return gc.mem_alloc()


def out(key, value):
    print("MEM", key, value)


def mode_imports(names):
    base = heap()
    for name in names:
        before = heap()
        __import__(name)
        out("import:" + name, heap() - before)
    out("import:total", heap() - base)


def _getenv(name, default=None):
    from os import getenv

    v = getenv(name)
    return default if v is None or v == "" else v


def _device(count_imports=True):
    # count_imports: import here what the constructor imports (net/, tls.py), so
    # that it counts as the library's import and not as the client's own heap.
    # Off for the smallest heap, which is the example's as a user runs it (the
    # order of imports moves that figure by several KB: fragmentation).
    before = heap()
    import micropython_device as example  # the example's settings, client and properties
    if count_imports:
        import arduino_iot_cloud.net.socket_engine  # noqa: F401
        import arduino_iot_cloud.net.wait  # noqa: F401
        import arduino_iot_cloud.tls  # noqa: F401

    after = heap()
    out("imports", after - before)
    out("after_import", after)
    client = example.make_client()
    example.setup(client)
    return example, client


def _add_churn_properties(client, state):
    # "level": written by the driver, counted and echoed back as "echo";
    # "counter": published by the device as fast as the link takes it.
    def on_level(client, value):
        state[0] += 1
        client["echo"] = value

    client.register("level", value=0, on_write=on_level)
    client.register("echo", value=0)
    client.register("counter", value=0)


def _attach_sync(client, peak):
    client.update_systime()
    deadline = time.time() + 30
    connected = False
    while not client.connected:
        if time.time() > deadline:
            raise OSError("not attached within 30 s")
        client.update()
        peak[0] = max(peak[0], heap())
        if not connected and client.engine.conn is not None:
            connected = True  # TCP + TLS up, CONNECT sent: the connection's own objects
            out("after_connect", heap())
        time.sleep(0.005)
    out("after_attach", heap())


def _garbage_begin():
    # Bytes allocated from here on (the collector is off, so nothing is freed
    # behind our back): garbage made per call, not heap in use.
    gc.collect()
    gc.disable()
    return gc.mem_alloc()


def _garbage_end(start, count):
    used = gc.mem_alloc() - start
    gc.enable()
    return used // max(1, count)


def _steady_sync(client, seconds, peak):
    start = _garbage_begin()
    for _ in range(200):
        client.update()
    out("idle_update_garbage", _garbage_end(start, 200))
    end = time.time() + seconds
    while time.time() < end:
        client.update()
        peak[0] = max(peak[0], heap())
        time.sleep(0.01)


def _churn_sync(client, n, rx):
    counter = client.registry.get("counter")
    sent = 0
    start = heap()
    out("churn_start", start)
    worst = start
    t0 = time.time()
    deadline = t0 + max(60, n / 50)
    next_sample = 1000
    sample = min(400, n)  # messages (in + out) measured for garbage, with the collector off
    g_start = _garbage_begin()
    while rx[0] < n or sent < n:
        if time.time() > deadline:
            break
        if g_start is not None and sent + rx[0] >= sample:
            out("message_garbage", _garbage_end(g_start, sent + rx[0]))
            g_start = None
        if sent < n and not counter.dirty:
            sent += 1
            client["counter"] = sent
        client.update()
        if sent + rx[0] >= next_sample:
            next_sample += 1000
            worst = max(worst, heap())
    # Let the last publishes be acknowledged, so the in-flight table is empty
    # at both ends of the comparison.
    settle = time.time() + 5
    while client.engine.mqtt.inflight_count() and time.time() < settle:
        client.update()
        time.sleep(0.002)
    end = heap()
    out("churn_end", end)
    out("churn_max", worst)
    out("churn_rx", rx[0])
    out("churn_tx", sent)
    out("churn_ms", int((time.time() - t0) * 1000))


def mode_run():
    base = heap()
    out("start", base)
    example, client = _device()
    rx = [0]
    _add_churn_properties(client, rx)
    after_import = heap()
    out("client_created", after_import)
    steady_s = float(_getenv("STEADY_SECONDS", "3"))
    churn = int(_getenv("CHURN_MESSAGES", "0"))
    peak = [after_import]
    if client.async_mode:
        _run_async(client, steady_s, peak)
        return
    _attach_sync(client, peak)
    out("attach_peak", peak[0])
    print("PHASE attached")
    peak = [heap()]
    _steady_sync(client, steady_s, peak)
    out("steady_peak", peak[0])
    out("steady_last", heap())
    if churn:
        print("PHASE churn")
        _churn_sync(client, churn, rx)
    client.stop()
    print("PHASE done")


def _run_async(client, steady_s, peak):
    import asyncio

    async def sample(client):
        while not client.connected:
            peak[0] = max(peak[0], heap())
            await asyncio.sleep_ms(5)
        out("attach_peak", peak[0])
        print("PHASE attached")
        peak[0] = heap()
        end = time.time() + steady_s
        while time.time() < end:
            peak[0] = max(peak[0], heap())
            await asyncio.sleep_ms(10)
        out("steady_peak", peak[0])
        out("steady_last", heap())
        client.stop()

    client.create_task("sample", sample, client)
    client.start()
    print("PHASE done")


def mode_min():
    example, client = _device(count_imports=False)
    rx = [0]
    _add_churn_properties(client, rx)
    if client.async_mode:
        client.create_task("stop", _stop_after_exchange, client, rx)
        client.start()
    else:
        client.start()
        deadline = time.time() + 20
        while rx[0] < 1 and time.time() < deadline:
            client["counter"] = client["counter"] + 1
            client.update()
            time.sleep(0.01)
        for _ in range(50):  # let the echo go out
            client.update()
            time.sleep(0.005)
        client.stop()
    if rx[0] < 1:
        print("PHASE no-exchange")
        sys.exit(3)
    print("PHASE exchanged")


async def _stop_after_exchange(client, rx):
    import asyncio

    deadline = time.time() + 25
    while rx[0] < 1 and time.time() < deadline:
        if client.connected:
            client["counter"] = client["counter"] + 1
        await asyncio.sleep_ms(10)
    await asyncio.sleep_ms(200)
    client.stop()


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "run"
    if mode == "imports":
        mode_imports(sys.argv[2:])
    elif mode == "min":
        mode_min()
    else:
        mode_run()
