"""The type stubs (src/arduino_iot_cloud/*.pyi): shipped in the wheel and not to boards,
used by mypy --strict on a user's script, and in step with the runtime objects.

client.py and records/ run on MicroPython too, where annotations cost memory on every
board, so the public API's types live in stub files beside the modules they describe.
"""

import ast
import inspect
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import arduino_iot_cloud
from arduino_iot_cloud import records

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "src" / "arduino_iot_cloud"
STUBS = {  # module -> its stub
    "arduino_iot_cloud": PKG / "__init__.pyi",
    "arduino_iot_cloud.cadata": PKG / "cadata.pyi",
    "arduino_iot_cloud.client": PKG / "client.pyi",
    "arduino_iot_cloud.errors": PKG / "errors.pyi",
    "arduino_iot_cloud.records": PKG / "records" / "__init__.pyi",
    "arduino_iot_cloud.records.catalogue": PKG / "records" / "catalogue.pyi",
    "arduino_iot_cloud.records.kinds": PKG / "records" / "kinds.pyi",
    "arduino_iot_cloud.records.property": PKG / "records" / "property.pyi",
    "arduino_iot_cloud.records.registry": PKG / "records" / "registry.pyi",
    "arduino_iot_cloud.records.schedule": PKG / "records" / "schedule.pyi",
    "arduino_iot_cloud.records.task": PKG / "records" / "task.pyi",
    "arduino_iot_cloud.sealing": PKG / "sealing" / "__init__.pyi",
    "arduino_iot_cloud.version": PKG / "version.pyi",
}
# Parameters the stubs announce before the runtime has them; each must go once it lands.
PENDING: dict = {}  # names a stub may declare ahead of the runtime, per function
# Keyword arguments a runtime **kwargs passes on, which the stub spells out.
FORWARDED = {
    "arduino_iot_cloud.client.ArduinoCloudClient.register":
        [n for n in inspect.signature(records.Property.__init__).parameters if n not in ("self", "name")]
        + ["sealed"],
}

TYPICAL_SCRIPT = '''
import asyncio
import logging

from arduino_iot_cloud import ArduinoCloudClient, ColoredLight, Location, Schedule, Task, ValueTypeError

DEVICE_ID = "d3f0b2c8-0000-4000-8000-000000000001"


def on_switch_changed(client: ArduinoCloudClient, value: bool) -> None:
    client["led"] = value


def read_temperature(client: ArduinoCloudClient) -> float:
    return 21.5


def blink(client: ArduinoCloudClient) -> None:
    client["led"] = not client["led"]


def on_schedule(client: ArduinoCloudClient, schedule: Schedule) -> None:
    logging.info("on for %s seconds", schedule.len)


def main() -> None:
    client = ArduinoCloudClient(device_id=DEVICE_ID, username=DEVICE_ID, password="secret", sync_mode=True)
    client.register("led", value=None, type=bool)
    client.register("sw1", value=None, on_write=on_switch_changed)
    client.register("temperature", value=None, on_read=read_temperature, interval=5.0)
    loc = client.register(Location("location", lat=0.0, lon=0.0))
    client.register(ColoredLight("light", swi=True, hue=0.0, sat=0.0, bri=0.0))
    client.register(Schedule("timer", on_active=on_schedule))
    client.register(Task("blink", on_run=blink, interval=1.0))
    lat: float | None = loc.lat
    print(lat, client.connected, client.thing_id, client.get("sw1", False))
    try:
        client["led"] = "x"
    except ValueTypeError as e:
        logging.error("%s", e)
    client.start()
    while True:
        client.update()


async def run() -> None:
    client = ArduinoCloudClient(DEVICE_ID, password=b"secret", ssl_params={"cafile": "ca.pem"})
    await client.run()


if __name__ == "__main__":
    main()
    asyncio.run(run())
'''

# A script with mistakes a checker must catch: a misspelt keyword, a type= the
# library refuses, a composite field of the wrong type, a callback of the wrong shape.
MISTAKES = '''
from arduino_iot_cloud import ArduinoCloudClient, Location

client = ArduinoCloudClient("dev", password="secret")
client.register("led", vaule=False)
client.register("led", type=list)
loc = client.register(Location("loc"))
name: str = loc.lat
client.register("sw", on_write=lambda: None)
'''
EXPECTED = [
    ':5: error: Unexpected keyword argument "vaule" for overloaded function "register" of '
    '"ArduinoCloudClient"; did you mean "value"?',
    ':6: error: Argument "type" to "register" of "ArduinoCloudClient" has incompatible type "type[list[Any]]"',
    ':8: error: Incompatible types in assignment (expression has type "float | None", variable has type "str")',
    ':9: error: Argument "on_write" to "register" of "ArduinoCloudClient" has incompatible type',
]


@pytest.fixture
def time_limit():
    return 300


# -- the wheel, and mypy against it ------------------------------------------------------

@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh virtualenv (no pip, no access to this checkout) holding the built wheel."""
    pytest.importorskip("build")
    tmp = tmp_path_factory.mktemp("typing")
    run = subprocess.run([sys.executable, "-m", "build", "--wheel", "-o", str(tmp / "dist"), str(ROOT)],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True, env=_clean_env()).stdout.strip()
    zipfile.ZipFile(wheel).extractall(purelib)  # what pip would unpack (no scripts needed here)
    return wheel, py, tmp


def _clean_env():
    env = dict(os.environ)
    for name in ("PYTHONPATH", "MYPYPATH"):
        env.pop(name, None)
    return env


def _mypy(installed, name, text):
    _, py, tmp = installed
    script = tmp / name
    script.write_text(text)
    run = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable",
                          str(py), "--python-version", "%d.%d" % sys.version_info[:2], script.name],
                         capture_output=True, text=True, cwd=str(tmp), env=_clean_env(), timeout=240)
    return run.returncode, run.stdout + run.stderr


def test_the_wheel_carries_the_stubs_and_mip_does_not(installed):
    wheel, _, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    for stub in STUBS.values():
        assert stub.relative_to(ROOT / "src").as_posix() in names
    assert "arduino_iot_cloud/py.typed" in names
    mip = json.loads((ROOT / "package.json").read_text())
    assert not [u for u in mip["urls"] if u[0].endswith(".pyi") or u[1].endswith(".pyi")]


def test_a_typical_script_passes_mypy_strict(installed):
    status, out = _mypy(installed, "typical.py", TYPICAL_SCRIPT)
    assert status == 0, out
    assert "Success: no issues found" in out


def test_mistakes_fail_mypy_with_the_expected_messages(installed):
    status, out = _mypy(installed, "mistakes.py", MISTAKES)
    assert status == 1, out
    for message in EXPECTED:
        assert "mistakes.py" + message in out, out


def test_the_stubs_themselves_pass_mypy_strict(tmp_path):
    # Only the stubs (and py.typed), so mypy reads no runtime module in their place.
    for module, stub in STUBS.items():
        target = tmp_path / stub.relative_to(ROOT / "src")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(stub.read_text())
    (tmp_path / "arduino_iot_cloud" / "py.typed").write_text("")
    run = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-p", "arduino_iot_cloud"],
                         capture_output=True, text=True, cwd=str(tmp_path), env=_clean_env(), timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr


# -- the stubs against the runtime objects -----------------------------------------------

def _stub(module):
    return ast.parse(STUBS[module].read_text())


def _public(name):
    return not name.startswith("_")


def _stub_names(tree):
    """Public names a stub module defines or re-exports, with their ast nodes."""
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    names[t.id] = node
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.asname == alias.name:  # `import X as X`: a re-export
                    names[alias.name] = node
    return {n: v for n, v in names.items() if _public(n) or n == "__version__"}


def test_the_package_exports_what_its_stub_declares():
    runtime = {n for n in dir(arduino_iot_cloud)
               if _public(n) and not inspect.ismodule(getattr(arduino_iot_cloud, n))}
    runtime |= {"SealingContext", "__version__"}  # imported on first use
    runtime |= set(arduino_iot_cloud._COMPOSITES)  # imported on first use too (records/__init__.py)
    assert set(_stub_names(_stub("arduino_iot_cloud"))) == runtime


def _params(fn_node):
    """[(name, kind)] of a stub function: kind is 'pos', 'kwonly', '*' or '**'."""
    a = fn_node.args
    out = [(p.arg, "pos") for p in a.posonlyargs + a.args]
    if a.vararg:
        out.append((a.vararg.arg, "*"))
    out += [(p.arg, "kwonly") for p in a.kwonlyargs]
    if a.kwarg:
        out.append((a.kwarg.arg, "**"))
    return out


_KINDS = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**",
          inspect.Parameter.KEYWORD_ONLY: "kwonly"}


def _runtime_params(fn, drop_first):
    params = [(p.name, _KINDS.get(p.kind, "pos")) for p in inspect.signature(fn).parameters.values()]
    return params[1:] if drop_first else params


def _decorators(node):
    return {d.id for d in node.decorator_list if isinstance(d, ast.Name)}


def _check_function(where, defs, fn, problems):
    """Compare the stub's def (or its overloads) with the runtime callable ``fn``."""
    is_classmethod = "classmethod" in _decorators(defs[0])
    runtime = _runtime_params(fn, drop_first=False)
    runtime_names = [n for n, k in runtime if k not in ("*", "**")]
    pending = PENDING.get(where, set())
    for name in pending:
        if name in runtime_names:
            problems.append("%s: %r is in the runtime now: remove it from PENDING" % (where, name))
    forwarded = FORWARDED.get(where)
    spelled_out = set()
    for node in defs:
        stub = _params(node)
        if is_classmethod:
            stub = stub[1:]  # cls: the runtime classmethod is bound
        stub = [(n, k) for n, k in stub if n not in pending]
        if forwarded is not None:
            spelled_out |= {n for n, k in stub if k == "kwonly"}
            stub = [(n, k) for n, k in stub if k != "kwonly"] + [(n, k) for n, k in runtime if k == "**"]
            runtime_here = [(n, k) for n, k in runtime if k != "kwonly"]
        else:
            runtime_here = runtime
        if stub != runtime_here:
            problems.append("%s: stub %s, runtime %s" % (where, stub, runtime_here))
    if forwarded is not None and spelled_out != set(forwarded):
        problems.append("%s: the stub spells out %s, the runtime passes on %s"
                        % (where, sorted(spelled_out), sorted(forwarded)))


def _runtime_members(cls):
    """Public methods, properties and class constants of cls and its bases (not of the builtins)."""
    out = set()
    for klass in cls.__mro__:
        if klass.__module__ == "builtins":
            continue
        out |= {n for n in vars(klass) if _public(n)}
    return out


def _stub_members(tree_names, cls_node):
    members = {}
    for node in cls_node.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            members.setdefault(node.name, []).append(node)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            members[node.target.id] = [node]
    for base in cls_node.bases:
        if isinstance(base, ast.Name) and isinstance(tree_names.get(base.id), ast.ClassDef):
            for n, v in _stub_members(tree_names, tree_names[base.id]).items():
                members.setdefault(n, v)
    return members


def _instance(cls):
    """An instance to look up attributes the constructor sets (no I/O in any of these)."""
    from arduino_iot_cloud import ArduinoCloudClient, ConnectRefused, SealingContext, Task, UnsealError
    from arduino_iot_cloud.errors import PKCS11Error

    makers = {
        ArduinoCloudClient: lambda: ArduinoCloudClient("dev", password="not-a-secret", server="127.0.0.1",
                                                       port=1),
        Task: lambda: Task("t", on_run=print),
        ConnectRefused: lambda: ConnectRefused(5),
        UnsealError: lambda: UnsealError("malformed", "detail"),
        PKCS11Error: lambda: PKCS11Error("pin", "detail"),
        SealingContext: lambda: SealingContext(b"s" * 16, b"a", b"b", volatile=True),
        records.Registry: records.Registry,
    }
    if cls in makers:
        return makers[cls]()
    if issubclass(cls, records.Property):
        return cls("p")
    if issubclass(cls, Exception):
        return cls("message")
    return None


def _stub_classes():
    """The classes of every stub by name: a base class may be in another stub (records/)."""
    classes = {}
    for module_name in STUBS:
        for name, node in _stub_names(_stub(module_name)).items():
            if isinstance(node, ast.ClassDef):
                classes[name] = node
    return classes


def test_every_stub_matches_its_runtime_module():
    problems = []
    classes = _stub_classes()
    for module_name in STUBS:
        module = __import__(module_name, fromlist=["_"])
        tree_names = _stub_names(_stub(module_name))
        for name, node in tree_names.items():
            where = "%s.%s" % (module_name, name)
            if not hasattr(module, name) and not (module_name == "arduino_iot_cloud" and name == "SealingContext"):
                problems.append("%s: in the stub, not at runtime" % where)
                continue
            obj = getattr(arduino_iot_cloud, name) if module is arduino_iot_cloud else getattr(module, name)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                _check_function(where, [node], obj, problems)
            elif isinstance(node, ast.ClassDef):
                _check_class(where, node, obj, dict(tree_names, **classes), problems)
    assert not problems, "\n".join(problems)


def _check_class(where, node, cls, tree_names, problems):
    if not inspect.isclass(cls):
        problems.append("%s: a class in the stub, a %s at runtime" % (where, type(cls).__name__))
        return
    stub = _stub_members(tree_names, node)
    # Every public member of the runtime class is in the stub.
    for name in sorted(_runtime_members(cls) - set(stub)):
        problems.append("%s.%s: at runtime, not in the stub" % (where, name))
    instance = _instance(cls)
    for name, defs in stub.items():
        member = "%s.%s" % (where, name)
        if isinstance(defs[0], ast.AnnAssign):
            found = hasattr(cls, name) or (instance is not None and hasattr(instance, name))
            if not found and name not in PENDING.get(where + ".__init__", ()):
                problems.append("%s: in the stub, not on the runtime class or its instances" % member)
            continue
        static = inspect.getattr_static(cls, name, None)
        if static is None:
            problems.append("%s: in the stub, not at runtime" % member)
        elif "property" in _decorators(defs[0]):
            if not isinstance(static, property):
                problems.append("%s: a property in the stub, not at runtime" % member)
        else:
            _check_function(member, defs, getattr(cls, name), problems)
