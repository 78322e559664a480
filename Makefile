# Two commands matter: `make demo` (a device on the local cloud) and `make test`.
PYTHON ?= python3

.PHONY: setup demo test test-fast test-mpy fuzz soak bench bench-mpy bench-sealing mpy-lib screenshot clean

# Everything the demo and the tests need (apt packages need root; see .ci/setup).
setup:
	bash .ci/setup

demo:
	$(PYTHON) -m arduino_iot_cloud.localcloud demo

test:
	$(PYTHON) -m pytest -q

test-fast:
	$(PYTHON) -m pytest -q tests/core && micropython tests/mpy_run.py

test-mpy:
	$(PYTHON) -m pytest -q tests/micropython

fuzz:
	FUZZ_EXAMPLES=200000 $(PYTHON) -m pytest -q tests/fuzz

soak:
	SOAK_MESSAGES=10000 $(PYTHON) -m pytest -q -m slow tests/faults

# tests/cluster in full: the smoke test, retained messages on every node, and the node-loss
# rehearsal (3 RabbitMQ nodes behind HAProxy, 100 devices, one node killed); about 2.5 min.
.PHONY: cluster-test bench-cluster
cluster-test:
	CLUSTER_TEST=1 $(PYTHON) -m pytest -q -s tests/cluster

bench:
	$(PYTHON) benchmarks/run.py

# Devices and messages/s held with 1 and 3 RabbitMQ nodes, memory per device, recovery (~10 min).
bench-cluster:
	$(PYTHON) benchmarks/cluster.py

bench-mpy:
	$(PYTHON) benchmarks/mpy_memory.py

# The device library for a board, installed by MicroPython's mip from this checkout (offline).
mpy-lib:
	$(PYTHON) tools/mip_install.py build/lib

# docs/dashboard.png: the dashboard with the demo device, taken by headless Chromium.
screenshot:
	$(PYTHON) tests/browser/screenshot.py docs/dashboard.png

bench-sealing:
	$(PYTHON) benchmarks/sealing.py

clean:
	rm -rf .localcloud .venv-141 benchmarks/results .pytest_cache build
