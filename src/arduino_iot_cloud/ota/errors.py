# OTA failure codes and the one exception that carries them.
#
# A failed update is reported to the cloud as OtaProgressCmdUp state Fail with
# state_data = one of these negative codes.  -5 .. -23 are the C++ library's
# numbers (same meaning); -200 and below are this library's own (README,
# "Over-the-air updates", lists them all).

from ..errors import RemoteError

HEADER_LENGTH = -5        # the file is not as long as its header says
HEADER_CRC = -6           # CRC-32 of the file does not match its header
MAGIC_NUMBER = -7         # not a Python application bundle (magic != 0x50594150)
PARSE_HTTP_HEADER = -8    # the server's HTTP response head could not be parsed
URL_PARSE = -9            # the URL is not https://host[:port]/path (or longer than 256 bytes)
SERVER_CONNECT = -10      # the file server could not be reached (TCP or TLS)
OTA_DOWNLOAD = -12        # the download broke off and could not be resumed, or stalled
HTTP_RESPONSE = -14       # the server answered with a status other than 200/206, or a wrong range
STORAGE_END = -15         # the file system is full
WRITE_FILE = -20          # another error writing the new application
RENAME = -23              # the pointer file could not be replaced
SHA256_MISMATCH = -201    # the payload's SHA-256 is not the command's finalSha256
WRONG_BASE = -202         # initialSha256 is not the running application's SHA-256
BAD_ARCHIVE = -203        # the payload is not a safe tar of files and directories
BUSY = -204               # an update is already under way
ROLLED_BACK = -205        # the new version did not attach in time (or died): back on the old one

NAMES = {
    HEADER_LENGTH: "HeaderLength", HEADER_CRC: "HeaderCrc", MAGIC_NUMBER: "MagicNumber",
    PARSE_HTTP_HEADER: "ParseHttpHeader", URL_PARSE: "UrlParse", SERVER_CONNECT: "ServerConnect",
    OTA_DOWNLOAD: "OtaDownload", HTTP_RESPONSE: "HttpResponse", STORAGE_END: "StorageEnd",
    WRITE_FILE: "WriteFile", RENAME: "Rename", SHA256_MISMATCH: "Sha256Mismatch",
    WRONG_BASE: "WrongBase", BAD_ARCHIVE: "BadArchive", BUSY: "Busy", ROLLED_BACK: "RolledBack",
}


class OtaError(RemoteError):
    """An update failed; .code is the (negative) code reported to the cloud."""

    def __init__(self, code, message):
        super().__init__("OTA %s (%d): %s" % (NAMES.get(code, "error"), code, message))
        self.code = code


def storage_error(e, what):
    """An OtaError for an OSError while writing `what` (ENOSPC: StorageEnd)."""
    errno = e.args[0] if e.args and isinstance(e.args[0], int) else None
    if errno in (27, 28):  # EFBIG (a file size limit), ENOSPC
        return OtaError(STORAGE_END, "no space left while writing %s" % what)
    return OtaError(WRITE_FILE, "cannot write %s: %s" % (what, e))
