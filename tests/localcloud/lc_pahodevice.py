"""A deliberately plain "device" on paho-mqtt, for testing the local cloud itself.

It knows nothing of the device library: it sends hand-built CBOR (cbor2) on the
protocol's topics and lets tests look at whatever comes back.
"""

import ssl
import threading
import time

import cbor2
import paho.mqtt.client as mqtt

WAIT = 5.0


class PahoDevice:
    """One device connection.  ``auth`` follows the Device unless ``password``/``certfile`` say otherwise."""

    def __init__(self, cloud, dev, host="127.0.0.1", port=None, password=None, certfile=None, keyfile=None,
                 client_id=None, ca_file=None, username=None):
        self.cloud, self.dev = cloud, dev
        self.host = host
        cert_auth = dev.auth == "cert" if certfile is None and password is None else certfile is not None
        self.port = port or (cloud.cert_port if cert_auth else cloud.password_port)
        self.cond = threading.Condition()
        self.messages = []  # (topic, payload, retain)
        self.connack = None
        self.connects = 0  # successful CONNACKs so far
        self.disconnected = None
        self.subacks = {}
        self.unsubacks = set()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or dev.device_id,
                        clean_session=True, protocol=mqtt.MQTTv311)
        c.tls_set(ca_certs=ca_file or cloud.ca_file,
                  certfile=(certfile or dev.certfile) if cert_auth else None,
                  keyfile=(keyfile or dev.keyfile) if cert_auth else None,
                  cert_reqs=ssl.CERT_REQUIRED)
        if not cert_auth:
            c.username_pw_set(username or dev.device_id, password if password is not None else dev.secret)
        c.reconnect_delay_set(min_delay=0.05, max_delay=0.2)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_unsubscribe
        self.client = c

    # -- callbacks --------------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, rc, props=None):
        with self.cond:
            self.connack = rc
            self.connects += 0 if rc.is_failure else 1
            self.cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, rc, props=None):
        with self.cond:
            self.disconnected = rc
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append((msg.topic, msg.payload, msg.retain))
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, rcs, props=None):
        with self.cond:
            self.subacks[mid] = rcs
            self.cond.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, rcs, props=None):
        with self.cond:
            self.unsubacks.add(mid)
            self.cond.notify_all()

    # -- actions ---------------------------------------------------------------------------

    def connect(self, timeout=WAIT, expect_ok=True):
        """Connect; return paho's CONNACK reason code (raise if ``expect_ok`` and refused)."""
        with self.cond:
            self.connack = None
            self.disconnected = None
        self.client.connect(self.host, self.port, keepalive=10)
        self.client.loop_start()
        with self.cond:
            ok = self.cond.wait_for(lambda: self.connack is not None or self.disconnected is not None, timeout)
        if not ok:
            raise TimeoutError("no CONNACK within %.1f s" % timeout)
        if expect_ok and (self.connack is None or self.connack.is_failure):
            raise ConnectionError("refused: %s / %s" % (self.connack, self.disconnected))
        return self.connack

    def wait_reconnected(self, connects, timeout=WAIT):
        """Wait until paho (which retries by itself) has connected more than ``connects`` times."""
        with self.cond:
            if not self.cond.wait_for(lambda: self.connects > connects, timeout):
                raise TimeoutError("no reconnect within %.1f s" % timeout)

    def subscribe(self, topic, qos=1, timeout=WAIT):
        """Subscribe and wait for the SUBACK; return the granted reason codes."""
        rc, mid = self.client.subscribe(topic, qos)
        with self.cond:
            if not self.cond.wait_for(lambda: mid in self.subacks, timeout):
                raise TimeoutError("no SUBACK for %s" % topic)
            return self.subacks.pop(mid)

    def publish(self, topic, payload, qos=1, timeout=WAIT):
        """Publish and wait until the broker has it (PUBACK)."""
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError("no PUBACK for %s" % topic)

    def roundtrip(self, timeout=WAIT):
        """Make sure everything the broker had for us has arrived.

        A device may not write a topic it can read (the broker's ACL), so there is no
        ping through our own topic: an UNSUBSCRIBE of a filter we never subscribed to
        is answered in order, after whatever the broker queued for us before it.
        """
        rc, mid = self.client.unsubscribe("/a/d/%s/roundtrip" % self.dev.device_id)
        with self.cond:
            if not self.cond.wait_for(lambda: mid in self.unsubacks, timeout):
                raise TimeoutError("no UNSUBACK within %.1f s" % timeout)
            self.unsubacks.discard(mid)

    def expect(self, topic, timeout=WAIT, predicate=None):
        """Wait for (and consume) the first message on ``topic`` (accepted by ``predicate``); return the payload."""
        found = []

        def check():
            for i, (t, p, r) in enumerate(self.messages):
                if t == topic and (predicate is None or predicate(p)):
                    found.append(self.messages.pop(i))
                    return True
            return False

        with self.cond:
            if not self.cond.wait_for(check, timeout):
                raise TimeoutError("nothing on %s within %.1f s; got %r" % (
                    topic, timeout, [(t, p[:40]) for t, p, _ in self.messages]))
        return found[0][1]

    def taken(self, topic):
        """All messages received on ``topic`` so far (consumed)."""
        with self.cond:
            out = [p for t, p, _ in self.messages if t == topic]
            self.messages = [m for m in self.messages if m[0] != topic]
        return out

    def command(self, tag, fields):
        """Send a command on c/up."""
        self.publish("/a/d/%s/c/up" % self.dev.device_id, cbor2.dumps(cbor2.CBORTag(tag, fields)))

    def expect_command(self, timeout=WAIT):
        """The next command on c/dw as ``(tag, fields)``."""
        obj = cbor2.loads(self.expect("/a/d/%s/c/dw" % self.dev.device_id, timeout))
        assert isinstance(obj, cbor2.CBORTag), obj
        return obj.tag, list(obj.value)

    def close(self):
        """Disconnect and stop paho's thread."""
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
