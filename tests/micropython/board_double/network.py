# TEST DOUBLE of a MicroPython board's `network` module (station interface
# only), for running examples/micropython_device.py on the unix port as if on
# a board.  It prints what the example asks of it; it joins no network.
STA_IF = 0


class WLAN:
    def __init__(self, interface):
        self._active = False
        self._connected = False
        print("wifi-double: WLAN(%d)" % interface)

    def active(self, on=None):
        if on is not None:
            self._active = bool(on)
        return self._active

    def isconnected(self):
        return self._connected

    def connect(self, ssid, password):
        if not self._active:
            raise OSError("wifi-double: connect() before active(True)")
        print("wifi-double: connect %s" % ssid)
        self._connected = True

    def ifconfig(self):
        return ("192.0.2.10", "255.255.255.0", "192.0.2.1", "192.0.2.1")
