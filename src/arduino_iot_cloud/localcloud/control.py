"""The CLI's line to a LocalCloud that runs in another process (``run``).

It connects to the broker's admin listener (plain MQTT on 127.0.0.1, the admin
password from ``admin.json``) and uses two topic families the emulator serves:

* ``localcloud/state/<device_id>``: retained JSON state of each device, read by
  :meth:`ControlClient.watch`;
* ``localcloud/ctl/<op>``: JSON requests carrying a ``reply_to`` topic, answered
  with ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import json
import secrets
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import paho.mqtt.client as mqtt

from .cloud import running_instance
from .emulator import CTL_TOPIC, STATE_TOPIC


class NotRunning(RuntimeError):
    """No LocalCloud is running on this work directory."""


class ControlError(RuntimeError):
    """The running cloud refused or failed a request."""


class ControlClient:
    """A connection to the running local cloud of ``workdir``; use as a context manager."""

    def __init__(self, workdir: Union[str, Path], timeout: float = 5.0) -> None:
        self.workdir = Path(workdir)
        info = running_instance(self.workdir)
        if info is None:
            raise NotRunning("no local cloud runs on %s (start one with: run)" % self.workdir)
        with open(self.workdir / "admin.json") as f:
            admin = json.load(f)
        self.timeout = timeout
        self._cond = threading.Condition()
        self._replies: Dict[str, Dict[str, Any]] = {}
        self._connected = False
        self._watchers: Dict[str, Callable[[Dict[str, Any]], None]] = {}
        self._followed: Dict[str, Callable[[Any], None]] = {}
        self._reply_prefix = "localcloud/reply/%s/" % secrets.token_hex(6)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="localcloud-cli-%s" % secrets.token_hex(4),
                        clean_session=True, protocol=mqtt.MQTTv311)
        c.username_pw_set(admin["user"], admin["password"])
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        self._client = c
        c.connect(info["host"], int(info["ports"]["admin"]), keepalive=30)
        c.loop_start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._connected, timeout):
                self.close()
                raise NotRunning("the local cloud on %s does not answer" % self.workdir)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if rc.is_failure:
            return
        client.subscribe(self._reply_prefix + "+", qos=1)
        with self._cond:
            self._connected = True
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            data = json.loads(msg.payload or b"null")
        except ValueError:
            return
        followed = self._followed.get(msg.topic)
        if followed is not None:
            followed(data)
            return
        if msg.topic.startswith(self._reply_prefix):
            with self._cond:
                self._replies[msg.topic[len(self._reply_prefix):]] = data
                self._cond.notify_all()
            return
        device_id = msg.topic.rsplit("/", 1)[-1]
        callback = self._watchers.get(device_id)
        if callback is not None and isinstance(data, dict):
            callback(data)

    def request(self, op: str, **args: Any) -> Any:
        """Ask the running cloud to do ``op``; return its result or raise ControlError."""
        nonce = secrets.token_hex(6)
        args["reply_to"] = self._reply_prefix + nonce
        self._client.publish(CTL_TOPIC + op, json.dumps(args), qos=1)
        with self._cond:
            if not self._cond.wait_for(lambda: nonce in self._replies, self.timeout):
                raise ControlError("the local cloud did not answer %r within %.0f s" % (op, self.timeout))
            reply = self._replies.pop(nonce)
        if not reply.get("ok"):
            raise ControlError(reply.get("error", "failed"))
        return reply.get("result")

    def watch(self, device_id: str, callback: Callable[[Dict[str, Any]], None]) -> None:
        """Call ``callback(state)`` with the device's state now and on every change."""
        self._watchers[device_id] = callback
        self._client.subscribe(STATE_TOPIC % device_id, qos=0)

    def follow(self, topic: str, callback: Callable[[Any], None]) -> None:
        """Call ``callback(data)`` with every JSON message on ``topic`` from now on.

        A request sent after this call is handled by the broker after the subscription
        (one client's packets are processed in order), so nothing it causes is missed.
        """
        self._followed[topic] = callback
        self._client.subscribe(topic, qos=1)

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def try_connect(workdir: Union[str, Path]) -> Optional[ControlClient]:
    """A ControlClient if a cloud runs on ``workdir``, else None."""
    try:
        return ControlClient(workdir)
    except NotRunning:
        return None
