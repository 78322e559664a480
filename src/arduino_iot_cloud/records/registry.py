# The registry: a device's records (properties, composites, tasks) by name.
#
# The registry is a dict of small record objects keyed by name, plus an index
# of composite fields ("loc:lat" -> the Location record), so an incoming SenML
# record is dispatched with one dict lookup whatever the number of properties.
# Only dirty records are published (property.py): the registry queues a record
# when it becomes dirty, so collecting the changes costs O(changed records).
#
# User callbacks run inside try/except: a failing callback is logged and
# never unregisters its property or breaks the connection.

from ..compat import getLogger
from ..errors import LocalError, UnsealError, ValueTypeError
from .property import Composite
from .task import Task

log = getLogger("arduino_iot_cloud.records")


_NO_CHANGES = ()


class Registry:
    """Records by name, with composite fields indexed for O(1) dispatch."""

    def __init__(self):
        self.records = {}      # name -> Property / Composite / Task
        self._fields = {}      # "name:field" -> Composite
        self._runnable = []    # records with on_read or on_run, in registration order
        self._dirty = []       # records changed by the device since they were last published

    def add(self, record):
        if record.name in self.records:
            raise LocalError("%r is already registered" % record.name)
        self.records[record.name] = record
        if isinstance(record, Composite):
            for field in record._fields:
                self._fields[record.name + ":" + field] = record
        if isinstance(record, Task) or record.on_read is not None:
            self._runnable.append(record)
        record.registry = self
        if record.dirty:
            self._dirty.append(record)

    def __contains__(self, name):
        return name in self.records

    def get(self, name):
        return self.records[name]

    def lookup(self, name, short_name=None):
        """Return (record, field) for an incoming SenML name, or (None, None)."""
        rec = self.records.get(name)
        if rec is not None and not isinstance(rec, (Composite, Task)):
            return rec, None
        rec = self._fields.get(name)
        if rec is not None:
            return rec, name[len(rec.name) + 1:]
        if short_name is not None:
            return self.lookup(short_name)
        return None, None

    def apply(self, decoded, client, last_values=False):
        """Apply decoded SenML records (name, short_name, value, time).

        Records of unknown names or of the wrong type are logged and skipped;
        the rest of the message still applies.  on_write runs once per
        touched property, after the whole message is applied.
        """
        touched = []
        for name, short_name, value, _t in decoded:
            if value is None:
                continue
            rec, field = self.lookup(name, short_name)
            if rec is None:
                log.warning("ignoring value for unknown property %s", name)
                continue
            try:
                changed = rec.apply_remote(field, value, last_values)
            except ValueTypeError as e:
                log.error("ignoring value for property %s: %s", name, str(e))
                continue
            except UnsealError as e:  # a sealed property refused it (sealing/property.py)
                log.warning("dropping value for property %s: %s", name, str(e))
                continue
            if changed is None:  # nothing applied, and no on_write (sealing/property.py)
                continue
            if (changed or not last_values) and rec not in touched:
                touched.append(rec)
        for rec in touched:
            if isinstance(rec, Composite) and not rec.initialized:
                continue
            try:
                rec.written(client)
            except Exception as e:  # a user callback: isolate it
                log.error("on_write of %s raised %s: %s", rec.name, type(e).__name__, str(e))
        return touched

    def queue(self, record):
        self._dirty.append(record)

    def changes(self):
        """Collect (name, value) pairs of changed records and mark them clean.

        Costs O(changed records), not O(registered ones).  A composite with an
        unknown field stays queued until it is complete.  With nothing queued
        (the common case: it runs on every step) it allocates nothing.
        """
        if not self._dirty:
            return _NO_CHANGES
        out = []
        waiting = []
        for rec in self._dirty:
            if not rec.dirty:
                continue  # overwritten by the cloud meanwhile
            recs = rec.records()
            if recs:
                out.extend(recs)
                rec.dirty = False
            else:
                waiting.append(rec)
        self._dirty = waiting
        return out

    def run_due(self, client, now):
        """Run on_read / on_run of records whose interval elapsed; return next deadline."""
        deadline = None
        for rec in self._runnable:
            if now >= rec.next_run:
                rec.next_run = now + rec.interval_ms
                try:
                    rec.run(client)
                except Exception as e:  # a user callback: isolate it
                    log.error("%s of %s raised %s: %s", "on_run" if isinstance(rec, Task) else "on_read",
                              rec.name, type(e).__name__, str(e))
            if deadline is None or rec.next_run < deadline:
                deadline = rec.next_run
        return deadline
