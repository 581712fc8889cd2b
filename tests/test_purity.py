"""The lowest layers stay pure (docs: DESIGN.md "Layout"): consensus/ and contracts/ do no I/O, read no clock,
draw no randomness, never import node/, wallet/ or cli/, and contracts/ uses no floats and no iteration over
unordered sets. Checked on the source with `ast`, and on what importing the packages really loads."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE_PACKAGES = ("consensus", "contracts")

#: Top-level modules that consensus/ and contracts/ must never import, at any nesting level.
FORBIDDEN = frozenset({
    "asyncio", "socket", "time", "random", "threading", "subprocess", "plyvel", "httpx", "fastapi", "uvicorn",
    "multiprocessing", "os", "node", "wallet", "cli",
    # the same kinds of thing under other names
    "secrets", "datetime", "select", "selectors", "ssl", "signal", "shutil", "tempfile", "sqlite3",
    "requests", "urllib", "http", "concurrent", "io", "pathlib", "glob", "uuid",
})


def source_files(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


PURE_FILES = source_files(*PURE_PACKAGES)
CONTRACT_FILES = source_files("contracts")


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved, including imports
    inside functions and classes, and `__import__("x")` / `importlib.import_module("x")` with a literal."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            yield node.lineno, mod
            for alias in node.names:  # `from . import node` or `from x import os`
                yield node.lineno, f"{mod}.{alias.name}" if mod else alias.name
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            arg = node.args[0] if node.args else None
            if name in ("__import__", "import_module") and isinstance(arg, ast.Constant) \
                    and isinstance(arg.value, str):
                yield node.lineno, arg.value


def _forbidden(module: str) -> bool:
    return module.split(".")[0] in FORBIDDEN


@pytest.mark.parametrize("path", PURE_FILES, ids=_ids(PURE_FILES))
def test_no_forbidden_imports(path: Path) -> None:
    bad = [f"{path.relative_to(ROOT)}:{line}: imports {mod}" for line, mod in imported_modules(path)
           if _forbidden(mod)]
    assert not bad, "\n".join(bad)


def test_the_import_scanner_sees_every_form(tmp_path: Path) -> None:
    pkg = tmp_path / "contracts"
    pkg.mkdir()
    f = pkg / "x.py"
    f.write_text(
        "import os.path\n"
        "from time import monotonic\n"
        "def f():\n"
        "    import random\n"
        "    from node import api\n"
        "class C:\n"
        "    def g(self):\n"
        "        __import__('socket')\n"
        "        importlib.import_module('wallet.keys')\n"
        "from .. import cli\n"
        "from . import y\n"
        "import hashlib\n",
        encoding="utf-8")
    found = [m for _, m in imported_modules(f, tmp_path)]
    assert sorted(m for m in found if _forbidden(m)) == sorted([
        "os.path", "time", "time.monotonic", "random", "node", "node.api", "socket", "wallet.keys", "cli"])
    assert "contracts.y" in found and "hashlib" in found


# ------------------------------------------------------------------------------------------ contracts only


def _float_uses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, float | complex):
            yield node.lineno, f"float literal {node.value!r}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float":
            yield node.lineno, "float(...) call"
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            yield node.lineno, "true division '/' (gives a float; use '//')"
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Div):
            yield node.lineno, "true division '/=' (gives a float; use '//=')"


@pytest.mark.parametrize("path", CONTRACT_FILES, ids=_ids(CONTRACT_FILES))
def test_no_floats_in_contracts(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = [f"{path.relative_to(ROOT)}:{line}: {what}" for line, what in _float_uses(tree)]
    assert not bad, "\n".join(bad)


def _is_unordered(node: ast.AST) -> bool:
    """A set display, a set comprehension, a set()/frozenset() call, or a set operation on one of them."""
    if isinstance(node, ast.Set | ast.SetComp):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id in ("set", "frozenset"):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
            "union", "intersection", "difference", "symmetric_difference"):
        return _is_unordered(node.func.value)
    set_ops = ast.BitOr | ast.BitAnd | ast.Sub | ast.BitXor
    return isinstance(node, ast.BinOp) and isinstance(node.op, set_ops) \
        and (_is_unordered(node.left) or _is_unordered(node.right))


#: Calls whose result depends on the iteration order of their argument.
_ORDER_SENSITIVE = ("list", "tuple", "enumerate", "zip", "next", "iter", "join")


def _unordered_iterations(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.For | ast.AsyncFor) and _is_unordered(node.iter):
            yield node.lineno, "for-loop over a set"
        elif isinstance(node, ast.comprehension) and _is_unordered(node.iter):
            yield node.iter.lineno, "comprehension over a set"
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name in _ORDER_SENSITIVE and any(_is_unordered(a) for a in node.args):
                yield node.lineno, f"{name}() of a set"
        elif isinstance(node, ast.Starred) and _is_unordered(node.value):
            yield node.lineno, "unpacking a set"


@pytest.mark.parametrize("path", CONTRACT_FILES, ids=_ids(CONTRACT_FILES))
def test_no_iteration_over_sets_in_contracts(path: Path) -> None:
    """Set order depends on hashes (randomised for str and bytes per process): iterate `sorted(...)`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = [f"{path.relative_to(ROOT)}:{line}: {what}" for line, what in _unordered_iterations(tree)]
    assert not bad, "\n".join(bad)


def test_the_set_and_float_detectors_work() -> None:
    src = (
        "for x in set(a): pass\n"
        "for x in {1, 2}: pass\n"
        "y = [x for x in frozenset(a)]\n"
        "z = list(set(a) | b)\n"
        "w = ','.join({'a', 'b'})\n"
        "ok = sorted(set(a))\n"
        "for x in sorted({1, 2}): pass\n"
        "n = len(set(a))\n"
        "f = 1.5\n"
        "g = a / 2\n"
        "h = a // 2\n"
    )
    tree = ast.parse(src)
    assert sorted(line for line, _ in _unordered_iterations(tree)) == [1, 2, 3, 4, 5]
    assert [line for line, _ in _float_uses(tree)] == [9, 10]


# ------------------------------------------------------------------------------------------ what is loaded

_LOADED_FORBIDDEN = ("node", "wallet", "cli", "plyvel", "httpx", "fastapi", "uvicorn", "asyncio", "starlette",
                     "anyio", "socket", "subprocess", "multiprocessing", "ssl", "selectors")
#: What importing our packages must not add (the interpreter's own startup may already hold some stdlib).
_ADDED_FORBIDDEN = frozenset(_LOADED_FORBIDDEN) | {"threading", "random", "secrets", "select", "signal",
                                                   "sqlite3", "concurrent", "http", "tempfile", "shutil"}


def _loaded_by(code: str) -> tuple[list[str], list[str]]:
    """(every module loaded, the modules the import itself added) in a fresh interpreter."""
    prog = ("import sys, json\nbefore = set(sys.modules)\n" + code +
            "\nprint(json.dumps([sorted(sys.modules), sorted(set(sys.modules) - before)]))")
    out = subprocess.run([sys.executable, "-c", prog], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"})
    assert out.returncode == 0, out.stderr
    everything, added = json.loads(out.stdout.strip().splitlines()[-1])
    return everything, added


def _offenders(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in _LOADED_FORBIDDEN]


def test_importing_contracts_loads_nothing_of_node_wallet_cli_or_io() -> None:
    everything, added = _loaded_by("import contracts.execute")
    assert "contracts.execute" in everything and "consensus.types" in everything
    assert not _offenders(everything), _offenders(everything)
    # and nothing that does I/O or concurrency came in with our packages (site may preload some stdlib)
    assert not [m for m in added if m.split(".")[0] in _ADDED_FORBIDDEN], added


def test_importing_every_pure_module_loads_nothing_of_node_wallet_cli_or_io() -> None:
    mods = sorted({_module_name(p) for p in PURE_FILES})
    everything, added = _loaded_by("\n".join(f"import {m}" for m in mods))
    assert not _offenders(everything), _offenders(everything)
    assert not [m for m in added if m.split(".")[0] in _ADDED_FORBIDDEN], added


def test_third_party_dependencies_of_the_core_are_quiet() -> None:
    """msgpack and PyNaCl must not pull asyncio, sockets or threads in themselves."""
    everything, added = _loaded_by(
        "import msgpack, nacl.signing, nacl.bindings, nacl.public, nacl.exceptions, nacl.hash")
    assert not _offenders(everything), _offenders(everything)
    assert not [m for m in added if m.split(".")[0] in _ADDED_FORBIDDEN], added
