"""LocalCloud: the broker, the CA and the emulator behind one object.

Work directory layout::

    pki/            local CA, server certificate, devices/<id>/ key and certificate files
    broker/         mosquitto.conf, mosquitto.log, password files, ACL files
    devices.json    devices and their things' last values (no secrets), see :mod:`.store`
    ota/            copies of the OTA files being served, see :mod:`.otaserver`
    admin.json      the admin listener's user and password (mode 0600), for the CLI
    ports.json      the last ports used (reused by the next start when still free)
    run.json        present while a LocalCloud runs: pid, host, ports
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import secrets
import string
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from . import writes
from .broker import HOST, Broker, _write_private, hash_passwords, pid_alive, port_is_free
from .emulator import _MISSING, BROKER, CloudEmulator, DeviceRef
from .otaserver import OtaServer
from .pki import Pki, check_device_id
from .store import AUTHS, VARIANTS, Device, Store, check_thing_id

log = logging.getLogger(__name__)

ADMIN_USER = "localcloud-admin"
_ALNUM = string.ascii_letters + string.digits


def new_secret(length: int = 24) -> str:
    """A random alphanumeric device secret (safe in shells and config files)."""
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


class LocalCloud:
    """A local Arduino IoT Cloud: mosquitto + local CA + cloud emulator.

    ``with LocalCloud(workdir) as cloud:`` starts and stops it; so do
    :meth:`start` / :meth:`stop` (also run at interpreter exit).  Methods that only
    touch files (:meth:`add_device`, :meth:`issue_certificate`, :meth:`env`) also
    work before :meth:`start`; the rest need a running cloud.
    """

    def __init__(self, workdir: Union[str, Path] = ".localcloud", host: str = HOST) -> None:
        if host != HOST:
            raise ValueError("the local cloud only listens on %s" % HOST)
        self.workdir = Path(workdir).resolve()
        self.host = host
        self.pki = Pki(self.workdir / "pki")
        self.store = Store(self.workdir / "devices.json")
        self.broker = Broker(self.workdir / "broker", self.pki.ca_file, self.pki.server_cert,
                             self.pki.server_key)
        self.emulator: Optional[CloudEmulator] = None
        self.ota_server = OtaServer(self.workdir / "ota", self.pki.server_cert, self.pki.server_key, host,
                                    on_request=self._on_ota_request)
        self._acl_lock = threading.Lock()  # the CLI's worker thread and the caller's may both move devices
        self._admin: Optional[Dict[str, str]] = None
        self._devices: Dict[str, Device] = {}

    # -- paths and ports -------------------------------------------------------------------

    @property
    def ca_file(self) -> str:
        """PEM file of the local CA (what ``ARDUINO_IOT_CLOUD_CA`` points at)."""
        return str(self.pki.ca_file)

    @property
    def ca_der(self) -> str:
        """DER file of the local CA (for MicroPython)."""
        return str(self.pki.ca_der)

    def _port(self, kind: str) -> int:
        if kind not in self.broker.ports:
            saved = self._read_json("ports.json") or {}
            if kind not in saved:
                raise RuntimeError("the local cloud has not run in %s yet: no ports chosen (start it: run)"
                                   % self.workdir)
            return int(saved[kind])
        return self.broker.ports[kind]

    @property
    def password_port(self) -> int:
        """TLS listener with username/password (the local 8884)."""
        return self._port("password")

    @property
    def cert_port(self) -> int:
        """TLS listener with client certificates (the local 8885)."""
        return self._port("cert")

    @property
    def admin_port(self) -> int:
        """Plain-MQTT loopback listener for the emulator and the CLI."""
        return self._port("admin")

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self.emulator is not None

    def _read_json(self, name: str) -> Optional[Dict[str, Any]]:
        try:
            with open(self.workdir / name) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def admin_credentials(self) -> Dict[str, str]:
        """``{"user", "password"}`` of the admin listener (created on first use)."""
        if self._admin is None:
            data = self._read_json("admin.json")
            if data is None:
                self.workdir.mkdir(parents=True, exist_ok=True)
                data = {"user": ADMIN_USER, "password": new_secret(32)}
                _write_private(self.workdir / "admin.json", json.dumps(data))
            self._admin = data
        return self._admin

    # -- lifecycle -------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the work directory, the CA and the server certificate if missing."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki.ensure()

    def start(self) -> "LocalCloud":
        """Start mosquitto and the emulator; return when devices can connect and attach."""
        if self.running:
            return self
        other = running_instance(self.workdir)
        if other is not None and other["pid"] != os.getpid():
            raise RuntimeError("a local cloud already runs on %s (pid %d)" % (self.workdir, other["pid"]))
        t0 = time.monotonic()
        self.prepare()
        admin = self.admin_credentials()
        self.broker.write_auth(admin["user"], hash_passwords([(admin["user"], admin["password"])]))
        self.broker.write_device_acl((d, raw.get("thing_id", "")) for d, raw in self.store.load()["devices"].items())
        saved = self._read_json("ports.json") or {}
        if saved and all(port_is_free(int(p)) for p in saved.values()):
            self.broker.ports = {k: int(v) for k, v in saved.items()}
        if self.broker.log_file.exists():
            os.replace(self.broker.log_file, self.broker.log_file.with_suffix(".log.1"))
        atexit.register(self.stop)
        try:
            self.broker.start()
            self.emulator = CloudEmulator(self.host, self.admin_port, admin["user"], admin["password"],
                                          self.broker.log_file)
            self.emulator.control_handler = self._control
            self._load_devices()
            self.emulator.start()
            self.ota_server.start()
        except BaseException:
            self.stop()
            raise
        _write_private(self.workdir / "ports.json", json.dumps(self.broker.ports))
        _write_private(self.workdir / "run.json", json.dumps(
            {"pid": os.getpid(), "host": self.host, "ports": self.broker.ports}))
        log.info("local cloud up in %.2f s: %s password %d, cert %d, admin %d", time.monotonic() - t0,
                 self.host, self.password_port, self.cert_port, self.admin_port)
        return self

    def _load_devices(self) -> List[str]:
        """Hand devices from the store (new ones only) to the emulator; return their ids."""
        assert self.emulator is not None
        data = self.store.load()
        added = []
        for device_id, raw in data["devices"].items():
            if device_id in self.emulator.devices:
                continue
            dev = self._devices.get(device_id) or Device.from_json(raw)
            self._devices[device_id] = dev
            values = data["things"].get(dev.thing_id, {}).get("values", {})
            self.emulator.add_device(dev, values)
            added.append(device_id)
        return added

    def stop(self) -> None:
        """Save last values, stop the emulator and mosquitto; idempotent, never raises."""
        atexit.unregister(self.stop)
        try:
            self.ota_server.stop()
        except Exception:
            log.exception("could not stop the OTA file server cleanly")
        emulator, self.emulator = self.emulator, None
        if emulator is not None:
            try:
                self.store.save_values(emulator.last_values())
            except Exception:
                log.exception("could not save last values")
            try:
                emulator.stop()
            except Exception:
                log.exception("could not stop the emulator cleanly")
        try:
            self.broker.stop()
        finally:
            info = running_instance(self.workdir)
            if info is not None and info["pid"] == os.getpid():
                os.unlink(self.workdir / "run.json")

    def restart_broker(self) -> None:
        """Restart mosquitto on the same ports; return once the emulator has reconnected
        and republished its retained messages.  Devices see their connection drop."""
        emulator = self._emulator()
        generation = emulator.generation
        self.broker.restart()
        emulator.wait_connected(generation)

    def __enter__(self) -> "LocalCloud":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _emulator(self) -> CloudEmulator:
        if self.emulator is None:
            raise RuntimeError("the local cloud is not running: start() it first")
        return self.emulator

    # -- devices ---------------------------------------------------------------------------

    def add_device(self, auth: str = "password", variant: str = "both", thing_id: Optional[str] = None,
                   properties: Optional[Dict[str, Any]] = None, device_id: Optional[str] = None,
                   tz_offset: int = 0, tz_dst_until: Optional[int] = None,
                   csr: Optional[Union[str, Path]] = None) -> Device:
        """Create a device.

        ``auth``: "password" (a secret is generated: ``dev.secret``) or "cert" (a key
        and certificate, PEM and DER: ``dev.keyfile``, ``dev.certfile``, ``.keyfile_der``,
        ``.certfile_der``; with ``csr=`` the CSR is signed instead and no key is made).
        ``variant``: "event", "command" or "both".  ``thing_id``: None makes a new
        thing, "" means no thing yet.  ``properties``: the thing's initial last values.
        ``tz_dst_until`` defaults to one year from now.
        """
        dev = self._new_device(auth, variant, thing_id, device_id, tz_offset, tz_dst_until, csr)
        self._register([dev], properties)
        return dev

    def add_devices(self, count: int, auth: str = "password", variant: str = "both",
                    properties: Optional[Dict[str, Any]] = None) -> List[Device]:
        """Create ``count`` devices, each with a new thing, in one go (one password-file
        update and one broker reload for all of them)."""
        devs = [self._new_device(auth, variant, None, None, 0, None, None) for _ in range(count)]
        self._register(devs, properties)
        return devs

    def _new_device(self, auth: str, variant: str, thing_id: Optional[str], device_id: Optional[str],
                    tz_offset: int, tz_dst_until: Optional[int], csr: Optional[Union[str, Path]]) -> Device:
        """A Device with its key material (secret, or key and certificate); not registered yet."""
        if auth not in AUTHS:
            raise ValueError("auth must be one of %s" % (AUTHS,))
        if variant not in VARIANTS:
            raise ValueError("variant must be one of %s" % (VARIANTS,))
        self.prepare()
        device_id = check_device_id(device_id or str(uuid.uuid4()))
        if device_id in self._devices or device_id in self.store.load()["devices"]:
            raise ValueError("device %s exists already" % device_id)
        until = int(time.time()) + 365 * 86400 if tz_dst_until is None else tz_dst_until
        dev = Device(device_id, auth=auth, variant=variant,
                     thing_id=str(uuid.uuid4()) if thing_id is None else check_thing_id(thing_id),
                     tz_offset=tz_offset, tz_dst_until=until)
        if auth == "password":
            dev.secret = new_secret()
        elif csr is not None:
            dev.certfile = str(self.pki.sign_csr(device_id, Path(csr)))
            dev.certfile_der = str(Path(dev.certfile).with_suffix(".der"))
        else:
            paths = self.pki.issue_device(device_id)
            dev.keyfile, dev.certfile, dev.keyfile_der, dev.certfile_der = (str(p) for p in paths)
        return dev

    def _register(self, devs: List[Device], properties: Optional[Dict[str, Any]]) -> None:
        """Store new devices, let the broker accept their secrets, and serve them."""
        secrets_ = [(d.device_id, d.secret) for d in devs if d.secret]
        if secrets_:
            self.broker.append_devices(hash_passwords(secrets_))
        values = dict(properties or {})

        def change(data: Dict[str, Any]) -> None:
            for dev in devs:
                data["devices"][dev.device_id] = dev.to_json()
                if dev.thing_id and values:
                    data["things"].setdefault(dev.thing_id, {"values": {}})["values"].update(values)
        self.store.update(change)
        for dev in devs:
            self._devices[dev.device_id] = dev
            log.info("added device %s (auth %s, variant %s, thing %r)", dev.device_id, dev.auth, dev.variant,
                     dev.thing_id)
        if self.emulator is not None:
            for dev in devs:
                self.emulator.add_device(dev, values)
            self._update_acl()
            self.emulator.barrier()

    def _update_acl(self) -> None:
        """Rewrite the device ACL from the running emulator's devices and reload the broker
        (it re-reads the password file too).  Returns once mosquitto has reloaded and
        answered a round trip (so that the next reload's signal cannot be lost)."""
        emulator = self._emulator()
        with self._acl_lock:
            with emulator._cond:
                pairs = [(d.device_id, d.thing_id) for d in emulator.devices.values()]
            self.broker.write_device_acl(pairs)
            self.broker.reload()
            emulator.barrier()

    def device(self, ref: DeviceRef) -> Device:
        """The Device for a Device or a device id."""
        if self.emulator is not None:
            return self.emulator.device(ref)
        device_id = ref.device_id if isinstance(ref, Device) else ref
        if device_id in self._devices:
            return self._devices[device_id]
        raw = self.store.load()["devices"].get(device_id)
        if raw is None:
            raise KeyError("unknown device %r" % device_id)
        return Device.from_json(raw)

    def devices(self) -> List[Device]:
        """All devices in the store."""
        return [self.device(d) for d in self.store.load()["devices"]]

    def issue_certificate(self, device_id: str, csr_path: Union[str, Path]) -> str:
        """Sign a CSR with the local CA as a certificate for ``device_id`` (CN forced to it).

        For keys that never leave a token (PKCS#11).  Returns the PEM path; a DER copy
        sits next to it with the ``.der`` suffix.
        """
        return str(self.pki.sign_csr(check_device_id(device_id), Path(csr_path)))

    def env(self, ref: DeviceRef) -> Dict[str, str]:
        """The environment variables that point a device script at this cloud."""
        dev = self.device(ref)
        port = self.password_port if dev.auth == "password" else self.cert_port
        return {"ARDUINO_IOT_CLOUD_SERVER": self.host, "ARDUINO_IOT_CLOUD_PORT": str(port),
                "ARDUINO_IOT_CLOUD_CA": self.ca_file}

    def _persist(self, dev: Device) -> None:
        self.store.save_device(dev)

    # -- the dashboard ---------------------------------------------------------------------

    def set(self, ref: DeviceRef, name: str, value: Any, timeout: float = 5.0) -> None:
        """Write ``name = value`` from the dashboard (a dict for a composite property);
        returns once the broker has accepted the message.  A value of another type than
        the device last reported for ``name`` raises BadWrite (a ValueError; writes.py)."""
        reported = self._emulator().history(ref, name)
        # Checked, then sent as given: the real cloud, too, may send 22 for a float.
        writes.check_write(name, value, reported[-1] if reported else None)
        info = self._emulator().set(ref, name, value)
        info.wait_for_publish(timeout)

    def get(self, ref: DeviceRef, name: str, default: Any = None) -> Any:
        """The cloud's last value of ``name`` (device report or dashboard write), or ``default``."""
        return self._emulator().values(ref).get(name, default)

    def values(self, ref: DeviceRef) -> Dict[str, Any]:
        """All last values of the device's thing."""
        return self._emulator().values(ref)

    def wait_for(self, ref: DeviceRef, name: str, value_or_predicate: Any, timeout: float = 10.0) -> Any:
        """Wait until the device reports ``name`` matching a value or predicate; see
        :meth:`CloudEmulator.wait_for`.  Raises TimeoutError describing what was seen."""
        return self._emulator().wait_for(ref, name, value_or_predicate, timeout)

    def history(self, ref: DeviceRef, name: str, timestamps: bool = False) -> List[Any]:
        """Values the device reported for ``name``, oldest first."""
        return self._emulator().history(ref, name, timestamps)

    def events(self, ref: DeviceRef, since: int = 0, timestamps: bool = False) -> List[tuple]:
        """The device's events: ``(kind, detail)`` (or ``(time, kind, detail)``), in order.

        Kinds: connect, disconnect, subscribe, unsubscribe (from the broker log);
        device_begin, thing_begin, last_values ("command"/"shadow"), timezone_request,
        command, values, shadow, bad_command, bad_values, bad_shadow (from the device);
        write, reassign, detach, timezone_sent (from the cloud); OTA: ota_begin, ota_progress,
        bad_ota (from the device), ota_sent (the cloud), ota_http (the file server).
        """
        return self._emulator().events(ref, since, timestamps)

    def mark(self, ref: DeviceRef) -> int:
        """A position in the device's event list, for ``events(since=)``/``wait_event(since=)``."""
        return self._emulator().mark(ref)

    def wait_event(self, ref: DeviceRef, kind: str, match: Any = _MISSING, since: int = 0,
                   timeout: float = 10.0) -> Any:
        """Wait for an event of ``kind`` at or after mark ``since`` (detail equal to, or
        accepted by, ``match`` if given); return its detail.  TimeoutError lists the events seen."""
        return self._emulator().wait_event(ref, kind, match, since=since, timeout=timeout)

    def dropped(self, ref: DeviceRef) -> Dict[str, int]:
        """What the cloud refused to keep of the device's reports, by reason (see
        :meth:`CloudEmulator.dropped`): its bounds, and retained publishes."""
        return self._emulator().dropped(ref)

    def broker_events(self, since: int = 0) -> List[tuple]:
        """Broker-wide events from mark ``since`` on, as ``(time, kind, detail)``: refused
        logins ("refused"), configuration reloads, messages on unowned things ("unowned_thing")."""
        return self._emulator().events(BROKER, since, timestamps=True)

    def broker_mark(self) -> int:
        """A position in the broker-wide events, for ``broker_events``/``wait_broker_event``."""
        return self._emulator().mark(BROKER)

    def wait_broker_event(self, kind: str, match: Any = _MISSING, since: int = 0,
                          timeout: float = 10.0) -> Any:
        """Wait for a broker-wide event (see :meth:`wait_event`).  Those read from mosquitto's
        log arrive a moment after the client saw the broker act."""
        return self._emulator().wait_event(BROKER, kind, match, since=since, timeout=timeout)

    def send_timezone(self, ref: DeviceRef, offset: int, until: int) -> None:
        """Tell the device its UTC offset (s) and until when it holds (unix s)."""
        self._emulator().send_timezone(ref, offset, until)
        self._persist(self.device(ref))

    def detach(self, ref: DeviceRef) -> None:
        """Take the device off its thing (ThingDetach / thing_id "")."""
        self._move(ref, "")

    def reassign(self, ref: DeviceRef, new_thing_id: Optional[str] = None) -> str:
        """Move the device to another thing (a new one if None); return its id."""
        thing_id = check_thing_id(new_thing_id or str(uuid.uuid4()))
        self._move(ref, thing_id)
        return thing_id

    def _move(self, ref: DeviceRef, thing_id: str) -> None:
        """The broker lets the device onto ``thing_id`` (and off its old thing) before
        the device is told: its first subscribe and publish there already pass the ACL."""
        emulator = self._emulator()
        emulator.reassign(ref, thing_id, before_notify=self._update_acl)
        self._persist(self.device(ref))

    def send_command(self, ref: DeviceRef, tag: int, fields: List[Any], timeout: float = 5.0) -> None:
        """Send any command (CBOR tag + array) on the device's ``c/dw``."""
        self._emulator().send_command(ref, tag, fields).wait_for_publish(timeout)

    def publish_raw(self, ref: DeviceRef, payload: bytes, topic: str = "e/i", timeout: float = 5.0) -> None:
        """Send raw bytes to the device: ``topic`` "e/i"/"shadow/i" (thing) or "c/dw"/"d/e/i" (device)."""
        self._emulator().publish_raw(ref, payload, topic).wait_for_publish(timeout)

    # -- OTA ---------------------------------------------------------------------------------

    def serve_ota(self, file_path: Union[str, Path], device: Optional[DeviceRef] = None, **faults: Any) -> str:
        """Serve a copy of an OTA file under a new unguessable HTTPS URL; return the URL.

        ``faults`` (for failure tests): ``status=404``, ``cut_at=N`` (+ ``cuts=1``),
        ``length_delta=-10``, ``rate=BYTES_PER_S``; see :mod:`.otaserver`.  Requests are
        recorded as ``ota_http`` events of ``device``.
        """
        self._emulator()
        device_id = self.device(device).device_id if device is not None else None
        return self.ota_server.url(self.ota_server.add(file_path, device_id, **faults))

    def set_ota_faults(self, url: str, **faults: Any) -> None:
        """Change the fault knobs of a served URL (none given: serve normally again)."""
        self.ota_server.find(url).set_faults(**faults)

    def send_ota(self, ref: DeviceRef, file_path: Union[str, Path], initial_sha: Optional[str] = None,
                 final_sha: Optional[str] = None, url: Optional[str] = None, ota_id: Optional[str] = None,
                 **faults: Any) -> str:
        """Send the device an OTA update (OtaUpdateCmdDown); return the OTA id (32 hex digits).

        The file is served at a new URL (with ``faults``, see :meth:`serve_ota`) unless
        ``url`` is given (sent as it is: an ``http://`` or unreachable URL for failure
        tests).  ``initial_sha``: the SHA-256 (hex) the running application must have
        (None: all zeros, any).  ``final_sha``: None computes it from the file (which
        must then be a valid OTA file: PackError otherwise); give one to send a damaged
        file.  Progress arrives as ``ota_progress`` events (:meth:`wait_ota`).
        """
        return self._send_ota(ref, file_path, initial_sha, final_sha, url, ota_id, **faults)["id"]

    def _send_ota(self, ref: DeviceRef, file_path: Union[str, Path], initial_sha: Optional[str],
                  final_sha: Optional[str], url: Optional[str], ota_id: Optional[str],
                  **faults: Any) -> Dict[str, str]:
        """:meth:`send_ota`, returning the command's fields: id, url, initial_sha, final_sha (hex)."""
        from ..ota.pack import read_ota_file

        emulator = self._emulator()
        dev = self.device(ref)
        if final_sha is None:
            with open(file_path, "rb") as f:
                final_sha = hashlib.sha256(read_ota_file(f.read())).hexdigest()
        initial = _sha_bytes(initial_sha, "initial") if initial_sha else bytes(32)
        final = _sha_bytes(final_sha, "final")
        if url is None:
            url = self.serve_ota(file_path, dev, **faults)
        raw_id = bytes.fromhex(ota_id) if ota_id else secrets.token_bytes(16)
        emulator.send_ota(dev, raw_id, url, initial, final).wait_for_publish(5.0)
        return {"id": raw_id.hex(), "url": url, "initial_sha": initial.hex(), "final_sha": final.hex()}

    def ota_sha(self, ref: DeviceRef) -> Optional[str]:
        """The SHA-256 (hex) of the application the device last reported (OtaBeginUp), or None."""
        return self._emulator().ota_shas.get(self.device(ref).device_id)

    def wait_ota(self, ref: DeviceRef, state: str, ota_id: Optional[str] = None, since: int = 0,
                 timeout: float = 30.0) -> Dict[str, Any]:
        """Wait for an OtaProgressCmdUp in ``state`` ("Fetch", "Reboot", "Fail", ...), of
        ``ota_id`` if given; return it (see :func:`.otawire.decode_ota_progress`)."""
        return self.wait_event(ref, "ota_progress", lambda p: p["state"] == state and (
            ota_id is None or p["id"] == ota_id), since=since, timeout=timeout)

    def _on_ota_request(self, device_id: Optional[str], detail: Dict[str, Any]) -> None:
        emulator = self.emulator
        if emulator is not None and device_id is not None:
            emulator.ota_event(device_id, "ota_http", detail)

    # -- control requests from the CLI -------------------------------------------------------

    def _control(self, op: str, args: Dict[str, Any]) -> Any:
        """Serve a CLI request arriving on ``localcloud/ctl/<op>`` (in the emulator's worker thread)."""
        if op == "reload":
            added = self._load_devices()
            self._update_acl()
            self._emulator().barrier()
            return added
        if op == "list":
            return [self._emulator().state(d) for d in list(self._emulator().devices)]
        device = args.get("device_id", "")
        if op == "state":
            return self._emulator().state(device)
        if op == "set":
            self.set(device, args["name"], args["value"])
            return None
        if op == "detach":
            self.detach(device)
            return None
        if op == "reassign":
            return self.reassign(device, args.get("thing_id"))
        if op == "timezone":
            self.send_timezone(device, int(args["offset"]), int(args["until"]))
            return None
        if op == "ota":
            return self._send_ota(device, args["path"], args.get("initial_sha"), args.get("final_sha"), None, None)
        raise ValueError("unknown control operation %r" % op)


def _sha_bytes(text: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError("the %s SHA-256 must be 64 hex digits, not %r" % (what, text))
    return raw


def running_instance(workdir: Union[str, Path]) -> Optional[Dict[str, Any]]:
    """``run.json`` of a live LocalCloud using ``workdir`` (pid, host, ports), or None."""
    try:
        with open(Path(workdir) / "run.json") as f:
            info = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    return info if pid_alive(int(info.get("pid", 0))) else None
