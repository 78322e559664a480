# The network layer: everything that touches a socket or waits.
#
#   engine.py         the engine contract both drivers use, retries and drops
#   socket_engine.py  our MQTT (mqtt/, sans-I/O) over a non-blocking TLS socket
#   paho_engine.py    paho-mqtt (CPython only), on the same contract
#   connector.py      opening a connection: TCP connect and TLS handshake, in steps
#   connection.py     an open connection: reads, writes, and what its errors mean
#   wait.py           how the drivers wait: poll, or the asyncio loop
#
# make_engine() is where a transport name becomes an engine.

from ..compat import MICROPYTHON
from ..errors import ConfigError
from ..retry import handshake_timeout


def make_engine(transport, client_id, username, password, keepalive, host, port, tls, session,
                backoff, sync_mode):
    if transport == "socket":
        if tls.hardware is None:
            tls.context()  # a missing or wrong CA/key/certificate file: ConfigError now, not a retry loop
        from .socket_engine import SocketEngine

        engine = SocketEngine(client_id, username, password, keepalive, host, port, tls, session, backoff,
                              lookup_on_loop=not MICROPYTHON)
        engine.give_way = sync_mode  # a tight update() loop yields the CPU when idle (socket_engine.py)
        return engine
    if transport == "paho":
        if MICROPYTHON:
            raise ConfigError("transport='paho' runs on CPython only; use transport='socket'")
        from .paho_engine import PahoEngine  # raises ConfigError naming the extra without paho

        # paho's connect (TCP and TLS, in a thread) is bounded as ours is.
        return PahoEngine(client_id, username, password, keepalive, host, port, tls, session, backoff,
                          connect_timeout=handshake_timeout(10.0, keepalive))
    raise ConfigError("transport must be 'socket' or 'paho'")
