"""The local cloud's web dashboard (CPython only, needs the ``[localcloud]`` extra: aiohttp).

:mod:`.server` serves the page and its live stream, :mod:`.view` decides what a
device and its properties look like on it; ``static/`` holds the page itself.
The device library never imports this package.
"""

from .server import Dashboard, dashboard_token

__all__ = ["Dashboard", "dashboard_token"]
