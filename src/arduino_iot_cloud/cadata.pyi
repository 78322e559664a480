# Type stubs for cadata.py.

CADATA: bytes
