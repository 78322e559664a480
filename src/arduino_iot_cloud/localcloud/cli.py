"""``arduino-localcloud`` / ``python -m arduino_iot_cloud.localcloud``: the local cloud's CLI.

``run`` keeps broker and emulator in the foreground; the other commands work
from another terminal, talking to it through :mod:`.control` (see the package
docstring), or on the work directory's files when nothing runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from .broker import _write_private
from .cloud import LocalCloud, running_instance
from .clustercli import add_commands as add_cluster_commands
from .store import VARIANTS, Device

log = logging.getLogger(__name__)


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 1."""


# -- where the cloud lives --------------------------------------------------------------------

DEFAULT_DIR = ".localcloud"
# Commands that may create a new cloud where none is found; the others need an existing one.
CREATING_COMMANDS = ("run", "demo", "add-device", "issue-cert", "cluster", "fleet", "emulate")


def running_pointer() -> Path:
    """A per-user file naming the work directory of the cloud that `run`/`demo` keep
    running, so commands from any folder find it."""
    base = os.environ.get("XDG_RUNTIME_DIR") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "arduino-localcloud" / "running"


def find_workdir(explicit: Optional[str], command: str) -> Path:
    """The work directory: --workdir, else $ARDUINO_LOCALCLOUD_DIR, else a .localcloud
    directory in the current folder or one of its parents (as git finds .git), else the
    cloud running now.  A command that needs an existing cloud and finds none is an
    error that says where it looked; it never creates an empty cloud by accident."""
    if explicit:
        return Path(explicit)
    if os.environ.get("ARDUINO_LOCALCLOUD_DIR"):
        return Path(os.environ["ARDUINO_LOCALCLOUD_DIR"])
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / DEFAULT_DIR).is_dir():
            return folder / DEFAULT_DIR
    pointer = running_pointer()
    try:
        recorded = Path(pointer.read_text().strip())
    except OSError:
        recorded = None
    if recorded is not None and running_instance(recorded) is not None:
        return recorded
    if command in CREATING_COMMANDS:
        return here / DEFAULT_DIR
    raise CliError("no local cloud found: no %s directory in %s or its parents, and none running (%s). "
                   "Start one with `python -m arduino_iot_cloud.localcloud run`, or give --workdir DIR"
                   % (DEFAULT_DIR, here, pointer))


def _record_running(workdir: Path) -> None:
    pointer = running_pointer()
    pointer.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pointer.write_text(str(workdir) + "\n")


def _forget_running(workdir: Path) -> None:
    pointer = running_pointer()
    try:
        if Path(pointer.read_text().strip()) == workdir:
            pointer.unlink()
    except OSError:
        pass


# -- helpers -----------------------------------------------------------------------------------

def _cloud(args: argparse.Namespace) -> LocalCloud:
    return LocalCloud(args.workdir)


def _resolve(cloud: LocalCloud, ref: str) -> Device:
    """A device by id or unique id prefix."""
    ids = list(cloud.store.load()["devices"])
    if ref in ids:
        return cloud.device(ref)
    matches = [i for i in ids if i.startswith(ref)]
    if len(matches) == 1:
        return cloud.device(matches[0])
    if not matches:
        raise CliError("no device %r in %s (see: list)" % (ref, cloud.workdir))
    raise CliError("%r matches several devices: %s" % (ref, ", ".join(matches)))


def _control(args: argparse.Namespace):
    from .control import ControlClient, NotRunning

    try:
        return ControlClient(args.workdir)
    except NotRunning as exc:
        raise CliError(str(exc)) from None


def _request(args: argparse.Namespace, op: str, **kw: Any) -> Any:
    from .control import ControlError

    with _control(args) as ctl:
        try:
            return ctl.request(op, **kw)
        except ControlError as exc:
            raise CliError(str(exc)) from None


def _parse_value(text: str) -> Any:
    """JSON (true, 21.5, "text", {"lat": 1, "lon": 2}); anything else is taken as a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _print_ports(cloud: LocalCloud) -> None:
    print("  password listener (TLS, device id + secret)   %s:%d" % (cloud.host, cloud.password_port))
    print("  certificate listener (TLS, client cert)      %s:%d" % (cloud.host, cloud.cert_port))
    print("  admin listener (loopback, for this CLI)      %s:%d" % (cloud.host, cloud.admin_port))
    print("  CA certificate                               %s (DER: %s)" % (cloud.ca_file, cloud.ca_der))


def _start_dashboard(args: argparse.Namespace, cloud: LocalCloud) -> Any:
    """Start the web dashboard and print its address with the token (shown only here);
    None when turned off or aiohttp (the [localcloud] extra) is missing."""
    if args.no_dashboard:
        return None
    try:
        from .web import Dashboard
    except ImportError:
        print("  dashboard: needs aiohttp (pip install 'arduino-iot-cloud[localcloud]')")
        return None
    try:
        dashboard = Dashboard(cloud, port=args.dashboard_port).start()
    except OSError as exc:
        raise CliError("the dashboard cannot listen on 127.0.0.1:%s: %s" % (args.dashboard_port,
                                                                           exc.strerror or exc)) from None
    print("  dashboard (with its token; open it in a browser) %s" % dashboard.login_url)
    return dashboard


def _wait_for_signal() -> None:
    """Block until Ctrl-C or SIGTERM.  SIGINT gets a handler of its own, since a shell
    starts background jobs with SIGINT ignored (``kill -INT`` must still stop us)."""
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


# -- commands ----------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    cloud = _cloud(args)
    try:
        cloud.start()
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    _record_running(cloud.workdir)
    dashboard = None
    try:
        print("local cloud running (pid %d), work directory %s" % (os.getpid(), cloud.workdir))
        _print_ports(cloud)
        dashboard = _start_dashboard(args, cloud)
        n = len(cloud.store.load()["devices"])
        print("  %d device(s)%s" % (n, "" if n else "; add one with: arduino-localcloud add-device"))
        print("Ctrl-C stops it.", flush=True)
        _wait_for_signal()
    finally:
        _forget_running(cloud.workdir)
        if dashboard is not None:
            dashboard.stop()
        cloud.stop()
        print("local cloud stopped", flush=True)
    return 0


def _property_args(items: List[str]) -> Dict[str, Any]:
    props = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CliError("--property wants NAME=VALUE, not %r" % item)
        props[name] = _parse_value(value)
    return props


def cmd_add_device(args: argparse.Namespace) -> int:
    cloud = _cloud(args)
    thing = "" if args.no_thing else args.thing
    auth = "cert" if (args.cert or args.csr) else "password"
    try:
        dev = cloud.add_device(auth=auth, variant=args.variant, thing_id=thing,
                               properties=_property_args(args.property), csr=args.csr)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    reloaded = False
    if running_instance(cloud.workdir) is not None:
        _request(args, "reload")
        reloaded = True
    if args.json:
        out = {k: v for k, v in dev.to_json().items() if v is not None}
        if dev.secret:
            out["secret"] = dev.secret
        print(json.dumps(out, indent=1))
        return 0
    print("device_id    %s" % dev.device_id)
    print("thing_id     %s" % (dev.thing_id or "(none)"))
    print("variant      %s" % dev.variant)
    if dev.secret:
        print("secret       %s" % dev.secret)
        print("             (shown only now: the cloud keeps only its hash)")
        print("export DEVICE_ID=%s SECRET_KEY=%s" % (dev.device_id, shlex.quote(dev.secret)))
    else:
        for label, path in (("keyfile", dev.keyfile), ("certfile", dev.certfile),
                            ("keyfile_der", dev.keyfile_der), ("certfile_der", dev.certfile_der)):
            if path:
                print("%-12s %s" % (label, path))
    if not reloaded:
        print("(the local cloud is not running: it will serve this device at the next run)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    cloud = _cloud(args)
    if running_instance(cloud.workdir) is not None:
        states = _request(args, "list")
    else:
        states = [dict(d.to_json(), connected=None, library_version=None) for d in cloud.devices()]
    if args.json:
        print(json.dumps(states, indent=1))
        return 0
    if not states:
        print("no devices (add one with: arduino-localcloud add-device)")
    for s in states:
        conn = {True: "connected", False: "offline", None: "-"}[s.get("connected")]
        print("%s  %-8s %-7s thing=%s  %s%s%s" % (s["device_id"], s["auth"], s["variant"], s["thing_id"] or "-",
                                                 conn, "  lib=%s" % s["library_version"] if s.get("library_version")
                                                 else "", "  app=%s" % s["ota_sha"] if s.get("ota_sha") else ""))
    return 0


def _state(args: argparse.Namespace, dev: Device) -> Dict[str, Any]:
    if running_instance(args.workdir) is not None:
        return _request(args, "state", device_id=dev.device_id)
    data = LocalCloud(args.workdir).store.load()
    return {"values": data["things"].get(dev.thing_id, {}).get("values", {})}


def cmd_get(args: argparse.Namespace) -> int:
    dev = _resolve(_cloud(args), args.device)
    values = _state(args, dev)["values"]
    if args.name is None:
        print(json.dumps(values, indent=1, sort_keys=True))
        return 0
    if args.name not in values:
        raise CliError("%s has no value for %r (known: %s)" % (dev.device_id, args.name,
                                                               ", ".join(sorted(values)) or "none"))
    print(json.dumps(values[args.name]))
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    dev = _resolve(_cloud(args), args.device)
    _request(args, "set", device_id=dev.device_id, name=args.name, value=_parse_value(args.value))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    dev = _resolve(_cloud(args), args.device)
    previous: Dict[str, Any] = {}
    lock = threading.Lock()

    def show(state: Dict[str, Any]) -> None:
        with lock:
            stamp = time.strftime("%H:%M:%S")
            if previous.get("thing_id") != state.get("thing_id") and previous:
                print("%s thing = %s" % (stamp, state.get("thing_id") or "(none)"), flush=True)
            if previous.get("connected") != state.get("connected"):
                print("%s %s" % (stamp, "connected" if state.get("connected") else "offline"), flush=True)
            old = previous.get("values", {})
            for name, value in state.get("values", {}).items():
                if name not in old or old[name] != value:
                    print("%s %s = %s" % (stamp, name, json.dumps(value)), flush=True)
            previous.clear()
            previous.update(state)

    with _control(args) as ctl:
        ctl.watch(dev.device_id, show)
        if args.timeout is not None:
            time.sleep(args.timeout)
        else:
            _wait_for_signal()
    return 0


ENV_SNIPPET_HEAD = "# then, in Python (CPython, or MicroPython's unix port):"


def env_snippet(dev: Device) -> List[str]:
    """Python lines that build a client for ``dev`` from the exported variables; they
    run as printed (the tests run them), on CPython and on MicroPython."""
    lines = ["import os", "from arduino_iot_cloud import ArduinoCloudClient"]
    if dev.auth == "password":
        lines.append('client = ArduinoCloudClient(device_id=os.getenv("DEVICE_ID"), password=os.getenv("SECRET_KEY"))')
    else:
        lines.append('client = ArduinoCloudClient(device_id=os.getenv("DEVICE_ID"), ssl_params={'
                     '"keyfile": os.getenv("DEVICE_KEY"), "certfile": os.getenv("DEVICE_CERT")})')
    return lines


def cmd_env(args: argparse.Namespace) -> int:
    cloud = _cloud(args)
    dev = _resolve(cloud, args.device)
    try:
        env = cloud.env(dev)
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    for key, value in env.items():
        print("export %s=%s" % (key, shlex.quote(value)))
    print("export DEVICE_ID=%s" % dev.device_id)
    if dev.auth == "password":
        print("# and SECRET_KEY: the secret add-device printed (the cloud keeps only its hash):")
        print("# export SECRET_KEY='...'")
    elif dev.keyfile:
        # PEM works on both runtimes (MicroPython converts it); DER copies sit beside them.
        print("export DEVICE_KEY=%s DEVICE_CERT=%s" % (shlex.quote(dev.keyfile), shlex.quote(dev.certfile)))
    else:
        # A CSR device: the key stays in its token, named by a pkcs11: URI (see softhsm/provision.py).
        print("export DEVICE_CERT=%s" % shlex.quote(dev.certfile or ""))
        print("# and DEVICE_KEY: the pkcs11: URI of the key in your token, e.g.")
        print("# export DEVICE_KEY='pkcs11:token=device;object=device-key;type=private'")
    print(ENV_SNIPPET_HEAD)
    for line in env_snippet(dev):
        print("#   " + line)
    if running_instance(cloud.workdir) is None:
        print("# note: the local cloud is not running; these are the ports of its last run")
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    dev = _resolve(_cloud(args), args.device)
    _request(args, "detach", device_id=dev.device_id)
    return 0


def cmd_reassign(args: argparse.Namespace) -> int:
    dev = _resolve(_cloud(args), args.device)
    print(_request(args, "reassign", device_id=dev.device_id, thing_id=args.thing))
    return 0


def cmd_timezone(args: argparse.Namespace) -> int:
    dev = _resolve(_cloud(args), args.device)
    _request(args, "timezone", device_id=dev.device_id, offset=args.offset, until=args.until)
    return 0


def cmd_ota(args: argparse.Namespace) -> int:
    from .otacli import run_ota

    dev = _resolve(_cloud(args), args.device)
    with _control(args) as ctl:
        return run_ota(ctl, dev.device_id, args.file, args.initial_sha, args.timeout)


def cmd_issue_cert(args: argparse.Namespace) -> int:
    cloud = _cloud(args)
    cloud.prepare()
    print(cloud.issue_certificate(args.device, args.csr))
    return 0


_DEMO_DEVICE = """\
import logging, math, os, time
from arduino_iot_cloud import ArduinoCloudClient, ColoredLight, Location, Task
logging.basicConfig(format="device: %(levelname)s %(message)s", level=logging.WARNING)
def on_switch(client, value):
    client["led"] = value
def sensors(client):
    t = time.time()
    client["temperature"] = round(21.5 + 2.0 * math.sin(t / 15) + 0.4 * math.sin(t / 2.3), 2)
    client["humidity"] = int(round(47 + 6 * math.sin(t / 40)))
client = ArduinoCloudClient(device_id=os.environ["DEVICE_ID"], username=os.environ["DEVICE_ID"],
                            password=os.environ["SECRET_KEY"])
client.register("sw1", value=None, on_write=on_switch)
client.register("led", value=None)
client.register("temperature", value=21.5)
client.register("humidity", value=47)
client.register("message", value="hello from the demo device")
client.register(ColoredLight("lamp", swi=True, hue=174.0, sat=80.0, bri=60.0))
client.register(Location("position", lat=45.0703, lon=7.6869))
client.register(Task("sensors", on_run=sensors, interval=1.0))
client.start()
"""


DEMO_FILE = "demo.json"


def _demo_device(cloud: LocalCloud) -> "tuple[Device, str]":
    """The demo device of this work directory, made on the first demo and reused by the
    next ones (its secret is kept in demo.json, mode 0600, for that purpose only)."""
    path = cloud.workdir / DEMO_FILE
    try:
        saved = json.loads(path.read_text())
        return cloud.device(saved["device_id"]), saved["secret"]
    except (OSError, ValueError, KeyError):
        pass
    dev = cloud.add_device(properties={"sw1": False, "led": False})
    _write_private(path, json.dumps({"device_id": dev.device_id, "secret": dev.secret}))
    return dev, dev.secret or ""


def _print_next_steps(cloud: LocalCloud, dev: Device) -> None:
    cli = "python -m arduino_iot_cloud.localcloud"
    print("try, from another terminal (any folder):")
    print("  %s watch %s            # the values as they change" % (cli, dev.device_id[:8]))
    print("  %s set %s sw1 true     # a dashboard write; the device copies it to led" % (cli, dev.device_id[:8]))
    print("  %s add-device          # a device of your own: then `env ID` prints how to point"
          " examples/basic.py at this cloud" % cli)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def cmd_demo(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    cloud = _cloud(args)
    try:
        cloud.start()
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    proc: Optional[subprocess.Popen] = None
    _record_running(cloud.workdir)
    dashboard = None
    try:
        dev, secret = _demo_device(cloud)
        print("local cloud running, work directory %s" % cloud.workdir)
        _print_ports(cloud)
        dashboard = _start_dashboard(args, cloud)
        print("demo device %s: the dashboard toggles sw1, the device copies it to led" % dev.device_id)
        _print_next_steps(cloud, dev)
        print("Ctrl-C stops all.", flush=True)
        env = dict(os.environ, DEVICE_ID=dev.device_id, SECRET_KEY=secret, **cloud.env(dev))
        proc = subprocess.Popen([sys.executable, "-c", _DEMO_DEVICE], env=env, stdin=subprocess.DEVNULL)
        value = False
        while True:
            if proc.poll() is not None:
                raise CliError("the demo device exited with status %d" % proc.returncode)
            value = not value
            cloud.set(dev, "sw1", value)
            print("dashboard: sw1 = %s" % json.dumps(value), flush=True)
            try:
                print("device:    led = %s" % json.dumps(cloud.wait_for(dev, "led", value, timeout=15)), flush=True)
            except TimeoutError as exc:
                print("no answer from the device yet: %s" % exc, flush=True)
            time.sleep(2)
    except KeyboardInterrupt:
        return 130
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        _forget_running(cloud.workdir)
        if dashboard is not None:
            dashboard.stop()
        cloud.stop()


# -- parser ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="arduino-localcloud",
                                description="A local Arduino IoT Cloud: mosquitto on 127.0.0.1 + cloud emulator.")
    p.add_argument("--workdir", default=None,
                   help="work directory (CA, config, devices, logs); default: $ARDUINO_LOCALCLOUD_DIR, else "
                        ".localcloud in this folder or a parent, else the cloud running now")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = p.add_subparsers(dest="command", required=True)

    for name, func, text in (("run", cmd_run, "run broker, emulator and web dashboard in the foreground"),
                             ("demo", cmd_demo, "run, plus a demo device driven from the dashboard")):
        r0 = sub.add_parser(name, help=text)
        r0.add_argument("--dashboard-port", type=int, metavar="PORT",
                        help="the web dashboard's port on 127.0.0.1 (default: the last one if free, "
                             "else any free one; printed)")
        r0.add_argument("--no-dashboard", action="store_true", help="no web dashboard")
        r0.set_defaults(func=func)

    a = sub.add_parser("add-device", help="create a device (prints its id and secret, or key/cert paths)")
    a.add_argument("--cert", action="store_true", help="client-certificate device (writes key + cert, PEM and DER)")
    a.add_argument("--csr", help="certificate device whose key lives elsewhere: sign this CSR")
    a.add_argument("--variant", choices=VARIANTS, default="both", help="attach variant the cloud speaks")
    g = a.add_mutually_exclusive_group()
    g.add_argument("--thing", help="thing id (default: a new one)")
    g.add_argument("--no-thing", action="store_true", help="no thing yet (ThingUpdate with an empty id)")
    a.add_argument("--property", action="append", metavar="NAME=JSON", help="initial last value (repeatable)")
    a.add_argument("--json", action="store_true", help="print JSON")
    a.set_defaults(func=cmd_add_device)

    ls = sub.add_parser("list", help="list devices")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    g2 = sub.add_parser("get", help="print a property's last value (JSON), or all of them")
    g2.add_argument("device")
    g2.add_argument("name", nargs="?")
    g2.set_defaults(func=cmd_get)

    s = sub.add_parser("set", help="write a property from the dashboard; VALUE is JSON: true, 21.5, '\"x\"', "
                                   "'{\"lat\":1,\"lon\":2}'; refused when the device reported another type")
    s.add_argument("device")
    s.add_argument("name")
    s.add_argument("value")
    s.set_defaults(func=cmd_set)

    w = sub.add_parser("watch", help="print a device's values as they change")
    w.add_argument("device")
    w.add_argument("--timeout", type=float, help="stop after this many seconds")
    w.set_defaults(func=cmd_watch)

    e = sub.add_parser("env", help="print the exports that point a device script at this cloud")
    e.add_argument("device")
    e.set_defaults(func=cmd_env)

    d = sub.add_parser("detach", help="take a device off its thing (ThingDetach)")
    d.add_argument("device")
    d.set_defaults(func=cmd_detach)

    r = sub.add_parser("reassign", help="move a device to another thing (ThingUpdate)")
    r.add_argument("device")
    r.add_argument("thing", nargs="?", help="thing id (default: a new one)")
    r.set_defaults(func=cmd_reassign)

    t = sub.add_parser("timezone", help="send a device its timezone")
    t.add_argument("device")
    t.add_argument("offset", type=int, help="UTC offset in seconds")
    t.add_argument("until", type=int, help="unix time until which the offset holds")
    t.set_defaults(func=cmd_timezone)

    o = sub.add_parser("ota", help="send a device an OTA file and follow the update until it restarts")
    o.add_argument("device")
    o.add_argument("file", help="an OTA file (python -m arduino_iot_cloud.ota pack APP_DIR -o FILE)")
    o.add_argument("--initial-sha", help="SHA-256 (hex) the running application must have (default: any)")
    o.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds (default 300)")
    o.set_defaults(func=cmd_ota)

    c = sub.add_parser("issue-cert", help="sign a device's CSR with the local CA (key kept in a token)")
    c.add_argument("device", help="device id (becomes the certificate's CN)")
    c.add_argument("csr", type=Path)
    c.set_defaults(func=cmd_issue_cert)

    add_cluster_commands(sub)  # cluster, fleet, emulate (clustered broker, any broker)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``arduino-localcloud``; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO if args.verbose else logging.WARNING)
    try:
        args.workdir = find_workdir(args.workdir, args.command)
        return args.func(args) or 0
    except CliError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
