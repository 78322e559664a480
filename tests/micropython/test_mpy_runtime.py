"""The library on the real MicroPython unix port, without a broker:

- the core unit tests (tests/core) run under micropython via tests/mpy_run.py, all of them;
- only what MicroPython has: every import statement of the device modules (found with
  ast, also those inside functions) either works under micropython, is guarded by
  ``try/except ImportError``, or is listed below as reached on CPython only; every device
  module imports under micropython and pulls in no module outside the device set;
- the logging fallback of compat.py works when ``logging`` is missing, formats lazily;
- package.json (for mip) lists exactly the device modules, every listed file exists,
  and a real ``mip.install`` from a loopback HTTP server gives a package that imports.
"""

import ast
import functools
import glob
import http.server
import json
import os
import re
import threading

import pytest

from mpy_helpers import EXAMPLE, EXAMPLES, ROOT, SRC, mpy_env, run_mpy

PKG = os.path.join(SRC, "arduino_iot_cloud")
# CPython-only parts, never shipped to a board.
EXCLUDED = ("arduino_iot_cloud.localcloud", "arduino_iot_cloud.pkcs11", "arduino_iot_cloud.net.paho_engine",
            "arduino_iot_cloud.localcloud_entry",
            # the command lines (OTA pack/install, sealing) and the packer run on a computer
            "arduino_iot_cloud.ota.__main__", "arduino_iot_cloud.ota.pack", "arduino_iot_cloud.sealing.__main__")

# Imports of CPython-only modules that the MicroPython path never reaches, and why.
CPYTHON_ONLY = {
    # _load_cert_chain returns before this on MicroPython (mbedTLS takes DER bytes).
    ("arduino_iot_cloud.tls", "tempfile"): "DER client keys re-encoded as PEM for CPython's ssl",
    # net.make_engine raises ConfigError for transport='paho' on MicroPython first.
    ("arduino_iot_cloud.net", "arduino_iot_cloud.net.paho_engine"): "transport='paho' (CPython only)",
}


def module_name(path):
    rel = os.path.relpath(path, SRC)[:-3].replace(os.sep, ".")
    return rel[:-9] if rel.endswith(".__init__") else rel


def device_modules():
    """Dotted names of every module of the package that a device needs."""
    names = []
    for path in sorted(glob.glob(os.path.join(PKG, "**", "*.py"), recursive=True)):
        name = module_name(path)
        if not any(name == e or name.startswith(e + ".") for e in EXCLUDED):
            names.append(name)
    return names


def module_file(name):
    base = os.path.join(SRC, *name.split("."))
    return base + ".py" if os.path.exists(base + ".py") else os.path.join(base, "__init__.py")


def _catches_import_error(try_node):
    for h in try_node.handlers:
        names = [h.type] if not isinstance(h.type, ast.Tuple) else list(h.type.elts)
        if any(isinstance(t, ast.Name) and t.id == "ImportError" for t in names):
            return True
    return False


def _guard(parents):
    """None for a plain import; ("body", id) inside the body of the innermost
    try/except ImportError, ("handler", id) inside its except clause (the fallback)."""
    for i in range(len(parents) - 1, -1, -1):
        parent, field = parents[i]
        if isinstance(parent, ast.Try) and _catches_import_error(parent):
            if field == "body":
                return ("body", id(parent))
            if field == "handlers":
                return ("handler", id(parent))
    return None


def imports_of(name):
    """(imported module, names or None, guard) for every import statement in module `name`;
    guard is None (plain) or ("body"|"handler", try id), see _guard."""
    is_pkg = module_file(name).endswith("__init__.py")
    package = name if is_pkg else name.rpartition(".")[0]
    tree = ast.parse(open(module_file(name)).read())
    out = []

    def walk(node, parents):
        if isinstance(node, ast.Import):
            for a in node.names:
                out.append((a.name, None, _guard(parents)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            names = [a.name for a in node.names]
            subs = [n for n in names if os.path.exists(os.path.join(SRC, *mod.split("."), n + ".py"))]
            for s in subs:  # "from . import commands": a submodule
                out.append((mod + "." + s, None, _guard(parents)))
            rest = [n for n in names if n not in subs]
            if rest or not subs:
                out.append((mod, rest, _guard(parents)))
        for field, value in ast.iter_fields(node):
            children = value if isinstance(value, list) else [value]
            for child in children:
                if isinstance(child, ast.AST):
                    walk(child, parents + [(node, field)])

    walk(tree, [])
    return out


@functools.lru_cache(maxsize=None)
def package_json():
    with open(os.path.join(ROOT, "package.json")) as f:
        return json.load(f)


# --- the unit tests -----------------------------------------------------------------


def test_core_unit_tests_pass_under_micropython(mpy):
    expected = 0
    for path in glob.glob(os.path.join(ROOT, "tests", "core", "test_*.py")):
        tree = ast.parse(open(path).read())
        expected += sum(1 for x in tree.body if isinstance(x, ast.FunctionDef) and x.name.startswith("test_"))
    r = run_mpy(["tests/mpy_run.py"], mpy_env(), timeout=300)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    m = re.match(r"(\d+) passed, (\d+) failed$", last)
    assert m, last
    # Every test function of tests/core ran (none skipped by an import that failed quietly).
    assert (int(m.group(1)), int(m.group(2))) == (expected, 0), last


# --- only what MicroPython has -----------------------------------------------------------


def test_every_import_of_the_device_modules_exists_on_micropython(mpy, tmp_path):
    # Plain imports must work under micropython.  A try/except ImportError is a feature
    # test: under micropython either every import of its body works, or every import of
    # its except clause (the fallback) does; an optional import has no fallback.
    device = set(device_modules())
    plain = []
    groups = {}  # try id -> {"body": [...], "handler": [...], "where": module}
    for name in sorted(device):
        for mod, names, guard in imports_of(name):
            if (name, mod) in CPYTHON_ONLY:
                continue
            if mod.startswith("arduino_iot_cloud"):
                if mod not in device and guard is None:
                    raise AssertionError("%s imports %s, which is not a device module" % (name, mod))
                if mod not in device:
                    continue  # guarded import of a CPython-only part (tls -> pkcs11)
            stmt = "import %s" % mod if not names else "from %s import %s" % (mod, ", ".join(names))
            if guard is None:
                plain.append((name, stmt))
            else:
                g = groups.setdefault(guard[1], {"body": [], "handler": [], "where": name})
                g[guard[0]].append(stmt)
    assert len(plain) > 10 and groups  # the walk found them (socket, ssl, struct, ... and the fallbacks)
    lines = ["failed = []",
             "def works(stmts):",
             "    for s in stmts:",
             "        try:",
             "            exec(s)",
             "        except ImportError:",
             "            return False",
             "    return True"]
    for name, stmt in plain:
        lines.append("if not works([%r]): failed.append(%r)" % (stmt, name + ": " + stmt))
    for g in groups.values():
        if g["handler"]:
            lines.append("if not (works(%r) or works(%r)): failed.append(%r)"
                         % (g["body"], g["handler"], g["where"] + ": " + " / ".join(g["body"] + g["handler"])))
    lines.append("print('FAILED', failed)")
    script = tmp_path / "import_check.py"
    script.write_text("\n".join(lines) + "\n")
    r = run_mpy([str(script)], mpy_env(SRC), timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FAILED []" in r.stdout, r.stdout


def test_cpython_only_list_is_current():
    # Every entry above still names a real import, so the list cannot hide a new one.
    for (name, mod), _why in CPYTHON_ONLY.items():
        assert any(m == mod for m, _n, _g in imports_of(name)), (name, mod)


def test_device_modules_import_under_micropython_and_nothing_else(mpy):
    mods = device_modules()
    script = ("import sys\n"
              "for m in %r:\n    __import__(m)\n"
              "print('LOADED', sorted(k for k in sys.modules if k.startswith('arduino_iot_cloud')))\n"
              "print('HAS_LOGGING', 'logging' in sys.modules)\n" % (mods,))
    r = run_mpy(["-c", script], mpy_env(SRC), timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    loaded = set(eval(r.stdout.split("LOADED", 1)[1].splitlines()[0]))
    assert loaded == set(mods), loaded ^ set(mods)
    for e in EXCLUDED:
        assert not any(m == e or m.startswith(e + ".") for m in loaded)


# --- logging fallback ------------------------------------------------------------------------

_LOGGING_SCRIPT = """
try:
    import logging
    print("HAVE_LOGGING")
except ImportError:
    print("NO_LOGGING")
from arduino_iot_cloud import compat
import arduino_iot_cloud  # every module gets its logger at import time

class Boom:
    def __str__(self):
        raise RuntimeError("formatted although the level is off")

log = compat.getLogger("t.x")
assert compat.getLogger("t.x") is log
log.debug("d %s", Boom())   # below the level: never formatted
log.info("i %s", Boom())
assert not log.isEnabledFor(10) and log.isEnabledFor(30)
log.warning("w %d %s", 5, "five")
log.error("e %r", "x")
log.exception("x %s", 1)
log.warning("no args %s")  # no arguments: the text as it is
print("DONE")
"""


def test_logging_fallback_without_logging_module(mpy):
    r = run_mpy(["-c", _LOGGING_SCRIPT], mpy_env(SRC), timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "NO_LOGGING"  # the unix port has no logging: the fallback is what runs
    assert lines[1:] == ["WARNING:t.x:w 5 five", "ERROR:t.x:e 'x'", "ERROR:t.x:x 1",
                         "WARNING:t.x:no args %s", "DONE"], r.stdout


def test_logging_module_used_when_present(mpy, tmp_path):
    # A board with micropython-lib's logging installed: compat uses it, not the fallback.
    (tmp_path / "logging.py").write_text(
        "class L:\n"
        "    def __init__(self, n):\n        self.n = n\n"
        "    def isEnabledFor(self, level):\n        return True\n"
        "    def _p(self, lv, m, *a):\n        print('REAL', lv, self.n, m % a if a else m)\n"
        "    def debug(self, m, *a):\n        self._p('D', m, *a)\n"
        "    def info(self, m, *a):\n        self._p('I', m, *a)\n"
        "    def warning(self, m, *a):\n        self._p('W', m, *a)\n"
        "    def error(self, m, *a):\n        self._p('E', m, *a)\n"
        "    def exception(self, m, *a):\n        self._p('E', m, *a)\n"
        "def getLogger(name=None):\n    return L(name)\n")
    r = run_mpy(["-c", "from arduino_iot_cloud import compat\n"
                       "compat.getLogger('t').debug('d %s', 1)\n"],
                mpy_env(str(tmp_path), SRC), timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "REAL D t d 1", r.stdout


# --- package.json and mip -------------------------------------------------------------------


def listed_modules():
    out = []
    for dest, _src in package_json()["urls"]:
        assert dest.startswith("arduino_iot_cloud/") and dest.endswith(".py"), dest
        out.append(module_name(os.path.join(SRC, dest)))
    return out


def test_package_json_lists_the_device_modules_and_version():
    pkg = package_json()
    from arduino_iot_cloud.version import __version__

    assert pkg["version"] == __version__
    for dest, src in pkg["urls"]:
        # Relative URLs: mip fetches them next to package.json (a URL, github:, a local server).
        assert not src.startswith(("http:", "https:", "github:", "/")), src
        assert os.path.isfile(os.path.join(ROOT, src)), "listed but missing: %s" % src
        assert src == "src/" + dest, (dest, src)
    listed = listed_modules()
    assert len(listed) == len(set(listed))
    # Nothing the device imports is missing (and nothing CPython-only is shipped).
    assert set(listed) == set(device_modules()), set(listed) ^ set(device_modules())
    for name in device_modules():
        for mod, _names, guard in imports_of(name):
            if mod.startswith("arduino_iot_cloud") and guard is None and (name, mod) not in CPYTHON_ONLY:
                assert mod in listed, "%s imports %s, missing from package.json" % (name, mod)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_root():
    """The repository served over HTTP on 127.0.0.1 (what a raw GitHub URL would serve)."""
    handler = functools.partial(_QuietHandler, directory=ROOT)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


def test_mip_install_from_url_gives_a_working_package(mpy, http_root, tmp_path):
    target = tmp_path / "lib"
    r = run_mpy(["-c", "import mip\nmip.install(%r, target=%r)\n" % (http_root + "/package.json", str(target))],
                mpy_env(), timeout=120)
    assert r.returncode == 0 and "Done" in r.stdout, r.stdout + r.stderr
    installed = sorted(os.path.relpath(p, target) for p in glob.glob(str(target / "**" / "*.py"), recursive=True))
    assert installed == sorted(dest for dest, _ in package_json()["urls"])
    # Only the installed copy on the path: the package and the example import from it.
    r = run_mpy(["-c", "import arduino_iot_cloud, micropython_device\n"
                       "print(arduino_iot_cloud.__file__, arduino_iot_cloud.__version__)\n"],
                mpy_env(str(target), EXAMPLES), timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith(str(target)), r.stdout


@pytest.mark.e2e
def test_mip_installed_package_attaches(mpy, mpy_procs, http_root, tmp_path, local_cloud, device_factory):
    # What the device imports at run time (net/ and tls are imported by the constructor) is
    # all in package.json: the mip-installed copy alone attaches and takes a write.
    target = tmp_path / "lib"
    r = run_mpy(["-c", "import mip\nmip.install(%r, target=%r)\n" % (http_root + "/package.json", str(target))],
                mpy_env(), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    dev = device_factory(auth="password")
    env = dict(local_cloud.env(dev), DEVICE_ID=dev.device_id, SECRET_KEY=dev.secret, RUN_SECONDS=60)
    proc = mpy_procs([EXAMPLE], mpy_env(str(target), EXAMPLES, **env))
    proc.wait_line("attached 1", 20)
    at = len(proc.lines)
    local_cloud.set(dev, "sw1", True)
    proc.wait_line("on_write sw1 True", 20, start=at)
    local_cloud.wait_for(dev, "led", True, timeout=20)
