# Installing an OTA file into the inactive slot, whether it comes from the
# network (updater.py feeds it piece by piece) or from a file on disk
# (install_file, first provisioning).

from . import errors, slots
from .errors import OtaError
from .otafile import OtaReader


class Installer:
    """Write an OTA file into the inactive slot; finish() verifies and switches.

    final_sha: the SHA-256 the payload must have (None: any, for a local
    install).  Nothing changes for the running application until finish()
    has checked everything; then one rename makes the new slot active.
    """

    def __init__(self, root, final_sha=None, total=None):
        self.root = root
        self.final_sha = final_sha
        self.slot = slots.inactive_slot(root)
        slots.empty_slot(root, self.slot)
        self.reader = OtaReader(root + "/" + self.slot, total)

    def expect(self, total):
        """The server said the file's size: a header that disagrees fails at once."""
        self.reader.total = total

    def feed(self, data):
        self.reader.feed(data)

    @property
    def received(self):
        return self.reader.received

    def verify(self):
        """Check the whole file; return the payload's SHA-256."""
        sha = self.reader.finish()
        if self.final_sha is not None and sha != self.final_sha:
            raise OtaError(errors.SHA256_MISMATCH, "the payload's SHA-256 is %s, the update says %s"
                           % (slots.hexstr(sha), slots.hexstr(self.final_sha)))
        return sha

    def activate(self, sha, ota_id=b"", trial=False, max_boots=1):
        slots.switch(self.root, self.slot, sha, ota_id, trial, max_boots)

    def abandon(self):
        """After a failure: close files and empty the slot (best effort)."""
        self.reader.close()
        try:
            slots.remove_tree(self.root + "/" + self.slot)
        except OSError:
            pass


def install_file(root, path):
    """Install the OTA file at `path` under `root` and make it the active
    application (not on trial).  Returns the payload's SHA-256 (bytes).
    Raises OtaError (with .code) when the file fails a check; the
    application that was active stays active."""
    installer = Installer(root)
    try:
        try:
            f = open(path, "rb")
        except OSError as e:
            raise OtaError(errors.OTA_DOWNLOAD, "cannot read %s: %s" % (path, e))
        with f:
            while True:
                chunk = f.read(4096)
                if not chunk:
                    break
                installer.feed(chunk)
        sha = installer.verify()
    except Exception:
        installer.abandon()
        raise
    installer.activate(sha)
    return sha
