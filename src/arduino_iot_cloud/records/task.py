# Task: user code the client runs every interval, outside any property, and
# how it tells whether that code takes 1.4.1's (client, args).

from ..errors import LocalError


def _takes_two(fn):
    """Does fn take (client, args)?  None when it cannot be read (MicroPython
    functions, callable objects, partials): the first call finds out."""
    code = getattr(fn, "__code__", None)
    skip = 0
    if code is None:
        code = getattr(getattr(fn, "__func__", None), "__code__", None)  # a bound method
        skip = 1
        if code is None:
            return None
    return code.co_argcount - skip >= 2 or bool(code.co_flags & 0x04)  # 0x04: *args


def _wrong_argument_count(e, given):
    # The TypeError of a call with the wrong number of arguments, as both
    # runtimes word it ("f() takes 1 positional arguments but 2 were given";
    # a bound method counts self; boards with terse errors say less).
    text = str(e)
    if "argument num/types mismatch" in text:
        return True
    return "positional argument" in text and ("but %d were given" % given in text
                                              or "but %d were given" % (given + 1) in text)


class Task:
    """User code run every `interval` seconds: on_run(client[, args])."""

    def __init__(self, name, on_run=None, interval=1.0, args=None, **kwargs):
        if on_run is None or not callable(on_run):
            raise LocalError("Task %r needs a callable on_run" % (name,))
        if kwargs:
            raise LocalError("Task got unexpected arguments: %s" % ", ".join(kwargs))
        self.name = name
        self.on_run = on_run
        self.args = args
        self.interval_ms = int(interval * 1000)
        self.next_run = 0
        self._pass_args = True if args is not None else _takes_two(on_run)
        self.dirty = False

    def run(self, client):
        # 1.4.1 calls on_run(client, args); later releases call on_run(client).
        # Both kinds of scripts exist: pass args only to a callable that takes it.
        if self._pass_args is None:  # not known yet: try 1.4.1's way first
            try:
                self.on_run(client, self.args)
                self._pass_args = True
                return
            except TypeError as e:
                if not _wrong_argument_count(e, 2):
                    raise
            self._pass_args = False
        if self._pass_args:
            self.on_run(client, self.args)
        else:
            self.on_run(client)

    def records(self):
        return ()
