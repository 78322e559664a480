# ArduinoCloudClient: the public API (compatible with arduino-iot-cloud 1.4.1)
# and the two drivers that run it.
#
# The client owns a Registry (properties and tasks), a DeviceSession (attach
# and sync, sans-I/O) and an engine (net/: connection, MQTT, reconnects).  Drivers:
#   - start() in async mode runs an asyncio loop: one network task that waits
#     for the socket, a user write, or the next deadline, whichever is first,
#     plus any coroutine the user added with create_task();
#   - sync_mode=True: start() blocks until the device is attached, then the
#     user calls update(), one bounded non-blocking step, from a polling loop.
# Both drivers call the same _step(); neither holds protocol logic.
# The constructor does no network I/O.  The network layer (net/, tls.py) is
# imported by the constructor, not here: importing the package loads no
# socket, ssl, select or asyncio (tests/core/test_layering.py).
#
# The first attach's rule: until the device has attached once, start() (and
# run()) raise a refusal that retrying cannot fix (RemoteError.permanent: a
# wrong password, a refused client certificate) and the end of their
# timeout; after that, every error is retried with backoff, for ever (a
# field device must outlive a credential rotation on the server).  update()
# never raises either.
#
# Connection events (on_connect, on_disconnect, on_attach) are attributes,
# as in paho-mqtt: the session queues them, _step() runs them after the
# network work, isolated as every user callback is.

import time

from .compat import getLogger, now_ms
from .errors import AttachTimeout, ConfigError, LocalError, RemoteError
from .records.property import RESERVED_NAMES, Composite, Property
from .records.registry import Registry
from .records.task import Task
from .retry import Backoff
from .session import WAIT_THING, DeviceSession
from .version import __version__

log = getLogger("arduino_iot_cloud.client")

DEFAULT_SERVER = "iot.arduino.cc"
PORT_PASSWORD = 8884
PORT_CERTIFICATE = 8885


def _text(value, what):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return str(value, "utf-8")
    raise ConfigError("%s must be str or bytes" % what)


def _getenv(name):
    try:
        from os import getenv
    except ImportError:  # MicroPython boards have no environment
        return None
    return getenv(name) or None


class ArduinoCloudClient:
    """A device connected to the Arduino IoT Cloud.

    device_id: the device's id (str or bytes).  username/password: basic auth
    (port 8884); without a password, ssl_params must name a client key and
    certificate (port 8885).  The environment variables ARDUINO_IOT_CLOUD_SERVER,
    ARDUINO_IOT_CLOUD_PORT and ARDUINO_IOT_CLOUD_CA override server, port and
    the CA, so an unchanged script can be pointed at a local broker.
    sealing: a SealingContext, for properties registered with sealed=True.

    Connection events: set client.on_connect = fn(client) (the broker
    accepted the login), client.on_disconnect = fn(client, error) (a link
    that had logged in is gone; error is None after stop()) and
    client.on_attach = fn(client) (attached to the thing, last values
    applied).  They run in update() or the event loop, never in a thread; an
    exception in one is logged and costs nothing else.
    """

    on_connect = None
    on_disconnect = None
    on_attach = None

    def __init__(self, device_id, username=None, password=None, ssl_params=None, server=None,
                 port=None, keepalive=10, ntp_server="pool.ntp.org", ntp_timeout=3,
                 sync_mode=False, transport="socket", reconnect_cap=64.0, sealing=None, ota=None):
        device_id = _text(device_id, "device_id")
        if not device_id:
            raise ConfigError("device_id is required")
        username = _text(username, "username")
        password = _text(password, "password")
        if password is not None and username is None:
            username = device_id
        if not 0 <= keepalive <= 300:
            # The cloud's load balancer drops links idle for ~350 s.
            raise ConfigError("keepalive must be between 0 and 300 seconds")
        self.device_id = device_id
        self.async_mode = not sync_mode
        self.ntp_server = ntp_server
        self.ntp_timeout = ntp_timeout
        from . import net
        from .tls import TLSConfig

        tls = TLSConfig(ssl_params, _getenv("ARDUINO_IOT_CLOUD_CA"))
        if password is None and not tls.client_cert:
            raise ConfigError("give a password, or a keyfile and certfile in ssl_params")
        server = _getenv("ARDUINO_IOT_CLOUD_SERVER") or server or DEFAULT_SERVER
        env_port = _getenv("ARDUINO_IOT_CLOUD_PORT")
        if env_port:
            port = int(env_port)
        elif port is None:
            port = PORT_PASSWORD if password is not None else PORT_CERTIFICATE
        self.server = server
        self.port = port
        self.registry = Registry()
        self.session = DeviceSession(device_id, self.registry, self,
                                     "%s-%s" % (__version__, "async" if self.async_mode else "sync"))
        self.engine = net.make_engine(transport, device_id, username, password, keepalive, server, port, tls,
                                      self.session, Backoff(cap_ms=int(reconnect_cap * 1000)), sync_mode)
        self.sealing = sealing      # a SealingContext for register(..., sealed=True)
        self.ota = ota              # ota.OTA: over-the-air updates (ota/updater.py)
        if ota is not None:
            ota.bind(self)
            self.session.ota = ota
        self._wake = None           # asyncio.Event in async mode
        self._user_tasks = {}
        self._running = False
        self._timeout = None        # start()'s timeout, for AttachTimeout's message

    # --- properties ------------------------------------------------------------
    def register(self, aiotobj, coro=None, **kwargs):
        """Register a property by name (value=, type=, on_read=, on_write=,
        interval=, sealed=), or a ready-made Property, composite (Location, ...)
        or Task.  type= (bool, int, float, str) fixes the type: the cloud's
        values of another type are refused (records/property.py)."""
        if kwargs.pop("sealed", False):
            aiotobj = self._sealed(aiotobj, kwargs)
        elif isinstance(aiotobj, str):
            aiotobj = Property(aiotobj, **kwargs)
        elif kwargs:
            raise LocalError("keyword arguments are only for register(name, ...)")
        if not isinstance(aiotobj, (Property, Task)):
            raise LocalError("register() takes a name, a property or a Task")
        if isinstance(aiotobj, Composite):  # (schedule.py is loaded on first use: records/__init__.py)
            from .records.schedule import Schedule

            if isinstance(aiotobj, Schedule):
                aiotobj.clock = self._local_time
        self.registry.add(aiotobj)
        if coro is not None:
            self.create_task(aiotobj.name, coro)
        return aiotobj

    def _sealed(self, name, kwargs):
        # Sealed properties: sealing/property.py.  Composites are not sealed:
        # they travel as one typed record per field, which a sealed string cannot be.
        if self.sealing is None:
            raise ConfigError("sealed=True needs ArduinoCloudClient(..., sealing=SealingContext(...))")
        if not isinstance(name, str):
            raise ConfigError("sealed=True is for plain properties registered by name (bool, int, float, str)")
        from .sealing.property import SealedProperty

        return SealedProperty(self.sealing, name, **kwargs)

    def _local_time(self):
        return int(time.time()) + self.session.tz_offset

    def __getitem__(self, name):
        if name in RESERVED_NAMES:
            return self._protocol_value(name)
        rec = self.registry.get(name)
        return rec if isinstance(rec, Composite) else rec.value

    def __setitem__(self, name, value):
        rec = self.registry.get(name)
        if isinstance(rec, Task):
            raise LocalError("%s is a task, not a property" % name)
        rec.set(value)
        if rec.dirty and self._wake is not None:
            self._wake.set()

    def __contains__(self, name):
        return name in self.registry or name in RESERVED_NAMES

    def get(self, name, default=None):
        if name in self:
            value = self[name]
            if value is not None:
                return value
        return default

    def _protocol_value(self, name):
        s = self.session
        if name == "thing_id":
            return s.thing_id
        if name == "tz_offset":
            return s.tz_offset
        if name == "tz_dst_until":
            return s.tz_dst_until
        return None

    @property
    def connected(self):
        """True when the device is attached to its thing and in sync."""
        return self.session.ready

    @property
    def thing_id(self):
        return self.session.thing_id

    def update_systime(self, server=None, timeout=None):
        """Set the board's clock from NTP (MicroPython boards with `ntptime`).

        Called by start(), not by the constructor, so creating a client does no
        network I/O.  On CPython the host keeps its own clock: nothing to do.
        """
        try:
            import ntptime
        except ImportError:
            return False
        try:
            ntptime.host = server or self.ntp_server
            ntptime.timeout = timeout or self.ntp_timeout
            ntptime.settime()
            log.info("clock set from NTP server %s", ntptime.host)
            return True
        except Exception as e:  # a missing clock must not stop the device
            log.error("could not set the clock from NTP: %s", str(e))
            return False

    # --- the shared step --------------------------------------------------------
    def _step(self, now):
        engine = self.engine
        if engine.due(now):
            engine.connect(now)
        deadline = engine.step(now, int(time.time()))
        user_deadline = self.registry.run_due(self, now)
        if self.ota is not None:
            ota_deadline = self.ota.step(now)
            if ota_deadline is not None and (user_deadline is None or ota_deadline < user_deadline):
                user_deadline = ota_deadline
        # Publish what the user callbacks (and OTA reports) just changed, without waiting.
        if self.session.publish_changes() or self.ota is not None:
            try:
                engine.flush(now)
            except RemoteError as e:  # the link died since step(): reconnect, never raise
                engine.drop(now, e)
        if user_deadline is not None and (deadline is None or user_deadline < deadline):
            deadline = user_deadline
        self._run_events()
        return deadline

    def _run_events(self):
        # The connection callbacks, in the order the session saw the events.
        events = self.session.events
        while events:
            event = events.pop(0)
            fn = getattr(self, event[0])
            if fn is None:
                continue
            try:
                fn(self, *event[1:])
            except Exception as e:  # a user callback: isolate it
                log.error("%s raised %s: %s", event[0], type(e).__name__, str(e))

    def _check_first_attach(self, now, give_up_at):
        """The first attach's rule (top of this file): raise what retrying
        cannot fix, or the end of the timeout, until the device attached once."""
        if self.session.attach_count:
            return
        error = self.engine.last_error
        if error is not None and getattr(error, "permanent", False):
            raise error
        if give_up_at is None or now < give_up_at:
            return
        if error is not None:
            why = "last connection error: %s" % str(error)
        elif self.session.state == WAIT_THING:
            why = ("logged in, but the cloud gave no thing id (does the device id match the credentials? "
                   "does the device have a thing?)")
        elif self.session.link is not None:
            why = "logged in, still fetching the thing's last values"
        else:
            why = "not connected yet (%s:%d)" % (self.server, self.port)
        raise AttachTimeout("not attached within %s s: %s" % (self._timeout, why), error)

    # --- sync driver ---------------------------------------------------------------
    def update(self):
        """Sync mode: one bounded, non-blocking step (reads, timers, publishes)."""
        if self.async_mode:
            raise LocalError("update() is for sync_mode=True; in async mode use start()")
        self._step(now_ms())

    def _wait_sync(self, deadline, now):
        # Block until the socket is ready or the deadline passes (start() only).
        timeout = 1000 if deadline is None else max(0, min(deadline - now, 1000))
        from .net import wait

        target = self.engine.wait_target()
        if target is None:
            time.sleep(timeout / 1000)
            return
        wait.wait_ready_sync(target, timeout)

    def _give_up_at(self, timeout):
        if timeout is None:
            return None
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0:
            raise LocalError("timeout must be a number of seconds (>= 0) or None")
        self._timeout = timeout
        return now_ms() + int(timeout * 1000)

    def start(self, interval=None, backoff=None, *, timeout=None):
        """Async mode: run forever.  Sync mode: return once attached and in sync.

        Until the device has attached once, a refusal that retrying cannot
        fix is raised: ConnectRefused for a wrong password, a refused client
        id or "not authorized" (CONNACK 4, 5, 2), TLSError for a client
        certificate the broker refuses.  timeout (seconds; None: no limit)
        bounds that first attach: AttachTimeout names the last connection
        error.  After the first attach every error is retried with backoff.

        interval and backoff are 1.4.1's: the first reconnect waits up to
        interval seconds, each failure after it multiplies that by backoff
        (>= 1), up to reconnect_cap; the waits are random within that bound
        (retry.py).  None keeps this library's 1 s, doubling.
        """
        self._retry_knobs(interval, backoff)
        self._give_up_at(timeout)  # a bad timeout is refused before the NTP request
        self.update_systime()
        if self.async_mode:
            from .net import wait

            wait.run_async(self.run(timeout=timeout))
            return
        give_up_at = self._give_up_at(timeout)
        try:
            while not self.session.ready:
                now = now_ms()
                deadline = self._step(now)
                if self.session.ready:
                    break
                now = now_ms()
                self._check_first_attach(now, give_up_at)
                if give_up_at is not None and (deadline is None or give_up_at < deadline):
                    deadline = give_up_at
                self._wait_sync(deadline, now)
        except RemoteError:
            self.stop()  # no link left open behind the exception
            raise

    def _retry_knobs(self, interval, backoff):
        retry = self.engine.backoff
        if interval is not None:
            if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval <= 0:
                raise ConfigError("start(interval=) is the first reconnect delay in seconds: a number > 0")
            retry.base_ms = max(1, int(interval * 1000))
        if backoff is not None:
            if not isinstance(backoff, (int, float)) or isinstance(backoff, bool) or backoff < 1:
                raise ConfigError("start(backoff=) multiplies the reconnect delay after each failure: "
                                  "a number >= 1")
            retry.factor = backoff

    def stop(self):
        """Disconnect; in async mode start() returns (the loop closes the link)."""
        if self._running:
            self._running = False
            self._wake.set()
        else:
            self.engine.close()
            self._run_events()

    # --- async driver ----------------------------------------------------------------
    def create_task(self, name, coro, *args):
        """Run a user coroutine beside the client (async mode)."""
        if callable(coro):
            coro = coro(*args)
        self._user_tasks[name] = coro
        if self._running:
            from .net import wait

            self._user_tasks[name] = wait.asyncio.create_task(coro)

    async def run(self, timeout=None):
        """The async driver, for use inside a running event loop.

        Raises as start() does until the first attach (see start()).
        """
        if not self.async_mode:
            raise LocalError("run() is for async mode")
        give_up_at = self._give_up_at(timeout)
        from .net import wait

        asyncio = wait.asyncio
        self._wake = asyncio.Event()
        self._running = True
        for name, coro in list(self._user_tasks.items()):
            self._user_tasks[name] = asyncio.create_task(coro)
        waiter = wait.IOWaiter(self._wake)
        try:
            while self._running:
                now = now_ms()
                # (MicroPython connects inside _step: an `async def` without an
                # await in it is a plain function there, so it is not awaited.)
                if self.engine.due(now) and self.engine.connects_async:
                    await self.engine.connect_async(now)
                deadline = self._step(now)
                now = now_ms()
                self._check_first_attach(now, give_up_at)
                if give_up_at is not None and not self.session.attach_count and \
                        (deadline is None or give_up_at < deadline):
                    deadline = give_up_at
                wait_ms = 1000 if deadline is None else max(0, min(deadline - now, 60000))
                if self.engine.pending_output():
                    wait_ms = min(wait_ms, 5)
                await waiter.wait(self.engine.wait_target(), wait_ms)
        finally:
            waiter.close()
            self._running = False
            for task in self._user_tasks.values():
                if hasattr(task, "cancel"):
                    task.cancel()
            self.engine.close()
            self._run_events()
