# TEST DOUBLE of a MicroPython board's `machine.Pin` (outputs only): prints
# every value written, so a test can see the example drive its LED.
class Pin:
    OUT = 1

    def __init__(self, number, mode=None):
        self.number = number
        self._value = 0

    def value(self, v=None):
        if v is None:
            return self._value
        self._value = 1 if v else 0
        print("pin-double: %d = %d" % (self.number, self._value))
