# Type stubs for version.py.

__version__: str
