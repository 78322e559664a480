# One exception hierarchy for the whole library.
#
# CloudError is the base of everything the library raises on purpose.  Errors
# split like h11's: a LocalError means the caller misused the API (bad
# argument, wrong value type), a RemoteError means the peer or the network
# misbehaved (malformed packet, refused login, dropped link).  Messages never
# carry secrets: no password, PIN or key material is ever formatted into them.
#
# On CPython some classes also derive from the matching built-in (ValueError,
# OSError, TypeError) so that generic handlers catch them.  MicroPython cannot
# combine two built-in exception bases, so there they derive from ours only.


class CloudError(Exception):
    """Base class of every error raised by arduino_iot_cloud."""


class LocalError(CloudError):
    """The library was used in a way it does not support."""


try:
    class ConfigError(LocalError, ValueError):
        """A constructor argument or ssl_params entry is invalid."""
except TypeError:  # MicroPython
    class ConfigError(LocalError):
        """A constructor argument or ssl_params entry is invalid."""


class RemoteError(CloudError):
    """The broker, the cloud or the network did something unexpected.

    permanent: True for a refusal that retrying cannot fix (a wrong password,
    a client certificate the broker does not accept).  The first attach after
    start() raises those; an attached device retries them with backoff.
    """

    permanent = False


try:
    class DecodeError(RemoteError, ValueError):
        """Bytes from the network could not be decoded (MQTT, CBOR, SenML, command)."""
except TypeError:  # MicroPython
    class DecodeError(RemoteError):
        """Bytes from the network could not be decoded (MQTT, CBOR, SenML, command)."""


try:
    class ValueTypeError(LocalError, TypeError):
        """A property was set to a value of a type it cannot hold."""
except TypeError:  # MicroPython
    class ValueTypeError(LocalError):
        """A property was set to a value of a type it cannot hold."""


class ConnectRefused(RemoteError):
    """The broker answered CONNECT with a non-zero CONNACK return code."""

    REASONS = {
        1: "unacceptable protocol version",
        2: "client identifier rejected",
        3: "server unavailable",
        4: "bad username or password (check the device id and secret key)",
        # What mosquitto (and the cloud) answer to a wrong password, too.
        5: "not authorized (wrong device id or secret key, or a certificate the broker does not accept)",
    }

    # Refusals that are about the device's credentials: retrying cannot fix them.
    PERMANENT_CODES = (2, 4, 5)

    def __init__(self, code):
        self.code = code
        self.permanent = code in self.PERMANENT_CODES
        reason = self.REASONS.get(code, "unknown reason")
        super().__init__("connection refused by broker: %s (CONNACK code %d)" % (reason, code))


class SubscribeRefused(RemoteError):
    """The broker answered SUBSCRIBE with the failure code 0x80 (MQTT 3.1.1:
    not authorised, or a topic it does not serve)."""

    def __init__(self, topic):
        self.topic = topic
        super().__init__("the broker refused the subscription to %s (SUBACK 0x80)" % topic)


try:
    class TransportError(RemoteError, OSError):
        """The connection could not be opened, or was lost."""
except TypeError:  # MicroPython
    class TransportError(RemoteError):
        """The connection could not be opened, or was lost."""


class TLSError(TransportError):
    """TLS failed: the broker's certificate was not trusted (unknown CA, wrong
    host name, expired) or the broker refused the device's certificate.  The
    message gives the reason in words, then the TLS library's own text.
    permanent is True when the broker said (with a TLS alert) that it refuses
    the device's certificate; a broker certificate we do not trust is retried
    (a captive portal or a clock set late may be the cause, and pass)."""

    def __init__(self, message, permanent=False):
        super().__init__(message)
        self.permanent = permanent


try:
    class AttachTimeout(RemoteError, TimeoutError):
        """start(timeout=...) ran out before the device attached; the message
        names the last connection error (last_error) or what the cloud left unsaid."""

        def __init__(self, message, last_error=None):
            super().__init__(message)
            self.last_error = last_error
except (TypeError, NameError):  # MicroPython
    class AttachTimeout(RemoteError):
        """start(timeout=...) ran out before the device attached; the message
        names the last connection error (last_error) or what the cloud left unsaid."""

        def __init__(self, message, last_error=None):
            super().__init__(message)
            self.last_error = last_error


class PKCS11Error(ConfigError):
    """The PKCS#11 key or certificate cannot be used (CPython, M2Crypto).

    reason is one of: "m2crypto", "engine", "module", "pin", "not_found",
    "mismatch", "certificate", "uri".
    """

    def __init__(self, reason, message):
        self.reason = reason
        super().__init__(message)


class UnsealError(DecodeError):
    """A sealed value was refused (sealing/): malformed, not authentic (or
    sealed for another property), a wrong key id, a replay, a plain value
    where a sealed one belongs, or a state file that could not be written.
    `.reason` names which; the message never holds a key, a secret or a
    plaintext."""

    def __init__(self, reason, detail):
        self.reason = reason
        super().__init__("sealed value refused (%s): %s" % (reason, detail))
