# How the drivers wait: for the socket (or the connect under way), a user's
# write, or the next deadline, whichever comes first.
#
# The engine names what to wait on as a target, (pollable, writable?), or
# None when there is no socket (between attempts).  wait_ready_sync() blocks
# (sync mode's start()); IOWaiter waits on the asyncio loop.

import select

from ..compat import MICROPYTHON

import asyncio  # noqa: E402 - after the runtime check it leans on


def wait_ready_sync(target, timeout_ms):
    """Block until the target is ready or timeout_ms passes (sync start() only)."""
    poller = select.poll()
    poller.register(target[0], select.POLLOUT if target[1] else select.POLLIN)
    poller.poll(int(timeout_ms))


def run_async(coro):
    asyncio.run(coro)


if MICROPYTHON:
    async def _ready(obj, writable):
        # MicroPython's asyncio parks a task on a stream with this yield.
        queue = asyncio.core._io_queue
        yield queue.queue_write(obj) if writable else queue.queue_read(obj)

    async def _wait_event(event, timeout_ms):
        try:
            await asyncio.wait_for_ms(event.wait(), timeout_ms)
        except asyncio.TimeoutError:
            pass
else:
    async def _wait_event(event, timeout_ms):
        # A timer that sets the event is cheaper than wait_for, which makes a
        # Task on every turn of the driver's loop.
        timer = asyncio.get_running_loop().call_later(timeout_ms / 1000, event.set)
        try:
            await event.wait()
        finally:
            timer.cancel()


async def resolve_async(host, port):
    """(family, address) of host:port, the name looked up on the loop (CPython):
    a slow DNS server must not stall the other tasks of the process."""
    import socket

    from ..errors import TransportError

    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise TransportError("cannot resolve %s: %s" % (host, e))
    return infos[0][0], infos[0][-1]


class IOWaiter:
    """Wait until the engine's target is ready, `wake` is set, or a timeout.

    CPython registers the descriptor with the loop (add_reader/add_writer);
    MicroPython runs a small watcher task parked on the socket.  Either way a
    ready socket just sets `wake`, so the driver has one thing to wait on.
    """

    def __init__(self, wake):
        self.wake = wake
        self._target = None
        self._fd = None
        self._watcher = None
        self._consumed = asyncio.Event() if MICROPYTHON else None

    def _follow(self, target):
        old = self._target
        if target is old or (target is not None and old is not None
                             and target[0] is old[0] and target[1] == old[1]):
            return  # (by identity: a new socket may get the number of a closed one)
        self._unwatch()
        self._target = target
        if target is None:
            return
        obj, writable = target
        if MICROPYTHON:
            self._watcher = asyncio.create_task(self._watch(obj, writable))
        else:
            # By number: a socket object closed before _unwatch() no longer has one.
            self._fd = obj.fileno()
            loop = asyncio.get_running_loop()
            (loop.add_writer if writable else loop.add_reader)(self._fd, self.wake.set)

    async def _watch(self, obj, writable):
        while True:
            await _ready(obj, writable)
            self.wake.set()
            await self._consumed.wait()
            self._consumed.clear()

    def _unwatch(self):
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        if self._fd is not None:
            loop = asyncio.get_running_loop()
            try:
                (loop.remove_writer if self._target[1] else loop.remove_reader)(self._fd)
            except (OSError, ValueError):
                pass
            self._fd = None
        self._target = None

    async def wait(self, target, timeout_ms):
        self._follow(target)
        if self._consumed is not None:
            self._consumed.set()
        if not self.wake.is_set():
            await _wait_event(self.wake, timeout_ms)
        self.wake.clear()

    def close(self):
        self._unwatch()
