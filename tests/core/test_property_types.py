# A property's type: declared with register(type=...), or fixed by the
# device's own first value; a value from the cloud never locks it (records/property.py).
# Plain calls on the registry, as the session makes them; runs under
# MicroPython too (tests/mpy_run.py).

from arduino_iot_cloud.errors import ConfigError, ValueTypeError
from arduino_iot_cloud.records import Property, Registry

DEV = "d3f0b2c8-0000-4000-8000-000000000002"


def _registry(*props):
    reg = Registry()
    for p in props:
        reg.add(p)
    reg.changes()
    return reg


def _write(reg, name, value):
    # One message from the cloud on e/i, as the session hands it to the registry.
    reg.apply([(name, None, value, None)], None)


def _raises(exc, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc as e:
        return str(e)
    raise AssertionError("no %s" % exc.__name__)


def test_a_stray_value_does_not_lock_an_untyped_property():
    # The scenario: value=None, then "x" from the cloud, then true.
    seen = []
    sw = Property("sw1", on_write=lambda client, v: seen.append(v))
    reg = _registry(sw)
    _write(reg, "sw1", "x")
    _write(reg, "sw1", True)
    assert sw.value is True
    assert seen == ["x", True]
    _write(reg, "sw1", False)
    assert seen == ["x", True, False]


def test_register_type_refuses_the_wrong_type_from_the_cloud():
    seen = []
    sw = Property("sw1", type=bool, on_write=lambda client, v: seen.append(v))
    assert sw.value is None and sw.kind is bool
    reg = _registry(sw)
    _write(reg, "sw1", "x")  # refused and logged; nothing else changes
    assert sw.value is None and seen == []
    _write(reg, "sw1", True)
    assert sw.value is True and seen == [True]
    _write(reg, "sw1", 0)  # the cloud's 0/1 for a bool still reads as one
    assert sw.value is False and seen == [True, False]


def test_register_type_converts_what_the_cloud_may_send():
    t = Property("t", type=float)
    n = Property("n", type=int)
    reg = _registry(t, n)
    _write(reg, "t", 22)
    _write(reg, "n", 7.0)
    assert t.value == 22.0 and type(t.value) is float
    assert n.value == 7 and type(n.value) is int
    _write(reg, "n", 7.5)  # not a whole number: refused
    assert n.value == 7


def test_register_type_fixes_what_the_device_may_set():
    p = Property("p", type=int)
    assert "p" in _raises(ValueTypeError, p.set, "x")
    p.set(3)
    assert p.value == 3 and p.dirty


def test_type_and_value_must_agree():
    assert Property("a", value=True, type=bool).value is True
    f = Property("f", value=1, type=float)  # an int is a fine float
    assert f.value == 1.0 and type(f.value) is float
    msg = _raises(ConfigError, Property, "b", value="on", type=bool)
    assert "b" in msg and "bool" in msg
    _raises(ConfigError, Property, "c", value=2.5, type=int)
    # ConfigError is a LocalError like every misuse of register().
    msg = _raises(ConfigError, Property, "d", type=list)
    assert "bool" in msg and "str" in msg
    _raises(ConfigError, Property, "e", type="bool")


def test_an_untyped_property_takes_the_latest_value_from_either_side():
    # README's basic example: on_write copies sw1 to led, both registered with value=None.
    # A stray "x" reaches led through the user's callback; it must not lock led either.
    def on_switch(client, value):
        led.set(value)

    sw = Property("sw1", on_write=on_switch)
    led = Property("led")
    reg = _registry(sw, led)
    _write(reg, "sw1", "x")
    assert led.value == "x" and led.kind is None
    _write(reg, "sw1", True)
    assert sw.value is True and led.value is True
    assert reg.changes() == [("led", True)]
    led.set(1)  # 1 == True, but another type: a change, published
    assert led.value == 1 and type(led.value) is int and reg.changes() == [("led", 1)]
    assert "led" in _raises(ValueTypeError, led.set, [1])  # never a value the cloud cannot hold


def test_value_declares_the_type_as_before():
    # 1.4.1 scripts: register("n", value=0) makes an int property.
    n = Property("n", value=0)
    reg = _registry(n)
    _write(reg, "n", "x")
    assert n.value == 0
    _write(reg, "n", 5.0)
    assert n.value == 5 and type(n.value) is int
    assert "n" in _raises(ValueTypeError, n.set, "y")


def test_register_type_through_the_client():
    from arduino_iot_cloud.client import ArduinoCloudClient

    c = ArduinoCloudClient(DEV, password="not-a-real-secret", server="127.0.0.1", port=1)
    sw = c.register("sw1", type=bool)
    assert sw.kind is bool and c["sw1"] is None
    _raises(ValueTypeError, c.__setitem__, "sw1", "x")
    c["sw1"] = True
    assert c["sw1"] is True
    _raises(ConfigError, c.register, "n", value="1", type=int)
    assert "n" not in c


def test_a_sealed_property_takes_type_too():
    from arduino_iot_cloud.sealing import SealingContext
    from arduino_iot_cloud.sealing.property import SealedProperty

    secret = b"\x01" * 16
    dev = SealingContext(secret, b"dev", b"own", volatile=True)
    own = SealingContext(secret, b"own", b"dev", volatile=True)
    seen = []
    p = SealedProperty(dev, "lock", type=bool, on_write=lambda client, v: seen.append(v))
    assert p.kind is bool and p.value is None
    reg = _registry(p)
    _write(reg, "lock", own.seal("lock", "x"))  # authentic, but not a bool: refused
    assert p.value is None and seen == []
    _write(reg, "lock", own.seal("lock", True))
    assert p.value is True and seen == [True]
    _raises(ConfigError, SealedProperty, dev, "n", value="1", type=int)
    _raises(ConfigError, SealedProperty, dev, "b", type=bytes)  # a sealed value is never bytes
    # Untyped: the latest authentic value wins, as for a plain property.
    q = SealedProperty(dev, "code")
    reg.add(q)
    _write(reg, "code", own.seal("code", "x"))
    _write(reg, "code", own.seal("code", 7))
    assert q.value == 7
