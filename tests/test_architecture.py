"""The architecture, checked from the source: who may import whom, no import cycles, and extras that install what
each command imports. Every import statement counts, also those inside functions (the lazy ones).

    pkdot_contract   <- training, service, benchmarks, pkdot     (the shared contract imports none of them)
    training, service                                              (never each other)
    pkdot.cli        -> training, service, benchmarks              (the only module that sees both halves)
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata as metadata
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pkdot.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pkdot", "pkdot_contract", "training", "service", "benchmarks")
SERVICE_STAGES = ("api", "streams", "uploads", "faces", "inference", "core")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module, resolved to a project module when it is one
    line: int
    lazy: bool  # inside a function: runs when called, not at import
    type_only: bool  # under `if TYPE_CHECKING:`
    optional: bool  # inside `try: ... except ImportError`


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _resolve(name: str) -> str:
    """The project module `name` stands for (`from a.b import c`: a.b.c when c is a module, else a.b)."""
    return name if name in MODULES or name.split(".")[0] not in PACKAGES else name.rsplit(".", 1)[0]


def _catches_import_error(node: ast.Try) -> bool:
    names = {n.id for h in node.handlers if h.type is not None
             for n in ast.walk(h.type) if isinstance(n, ast.Name)}
    return bool(names & {"ImportError", "ModuleNotFoundError"})


def imports_of(module: str) -> Iterator[Import]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, lazy: bool, type_only: bool, optional: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(module, _resolve(alias.name), child.lineno, lazy, type_only, optional)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - child.level + 1], base]).strip(".")
                for alias in child.names:
                    yield Import(module, _resolve(f"{base}.{alias.name}"), child.lineno, lazy, type_only, optional)
            else:
                in_function = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
                checking = isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
                guarded = isinstance(child, ast.Try) and _catches_import_error(child)
                yield from visit(child, lazy or in_function, type_only or checking, optional or guarded)

    yield from visit(ast.parse(path.read_text(), str(path)), False, False, False)


ALL_IMPORTS = [i for m in MODULES for i in imports_of(m)]


def _top(name: str) -> str:
    return name.split(".")[0]


# -- who may import whom -----------------------------------------------------------------------------------------------

FORBIDDEN = {
    "pkdot_contract": {"pkdot", "training", "service", "benchmarks", "torch", "fastapi", "starlette", "onnxruntime"},
    "training": {"pkdot", "service", "benchmarks", "fastapi", "starlette"},
    "service": {"pkdot", "training", "benchmarks", "torch"},
    "benchmarks": {"pkdot"},
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_boundaries(package: str) -> None:
    offenders = [f"{MODULES[i.module].relative_to(ROOT)}:{i.line} imports {i.target}" for i in ALL_IMPORTS
                 if _top(i.module) == package and _top(i.target) in FORBIDDEN[package]]
    assert not offenders, offenders


def test_the_boundary_check_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The walker itself: an import inside a function, a relative import and a guarded one are all found."""
    probe = ROOT / "service" / "_probe_for_the_architecture_test.py"
    probe.write_text("def f():\n    from training import config\n    from .core import errors\n"
                     "try:\n    import torch\nexcept ImportError:\n    pass\n")
    try:
        MODULES["service._probe_for_the_architecture_test"] = probe
        found = {(i.target, i.lazy, i.optional) for i in imports_of("service._probe_for_the_architecture_test")}
    finally:
        del MODULES["service._probe_for_the_architecture_test"]
        probe.unlink()
    assert found == {("training.config", True, False), ("service.core.errors", True, False), ("torch", False, True)}


def test_only_the_cli_sees_both_halves() -> None:
    both = {i.module for i in ALL_IMPORTS if _top(i.target) == "training"} & {
        i.module for i in ALL_IMPORTS if _top(i.target) == "service"}
    assert {m for m in both if _top(m) != "benchmarks"} == {"pkdot.cli"}


# -- no cycles ---------------------------------------------------------------------------------------------------------

def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, or None (depth-first search, colouring nodes)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := dfs(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := dfs(node)):
            return found
    return None


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_modules() -> None:
    """Module-level imports of the project's modules form no cycle (imports inside functions included too for
    service/, where every module is imported at start-up)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for i in ALL_IMPORTS:
        counted = not i.type_only and (not i.lazy or _top(i.module) == "service")
        if i.target in MODULES and counted:
            graph[i.module].add(i.target)
    assert _cycle(graph) is None


def test_service_stages_form_layers() -> None:
    """Between the stages of service/ the imports go one way: api -> streams, uploads -> faces, inference -> core
    (every import counts, type-only ones too)."""
    def stage(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 2 and parts[0] == "service" and parts[1] in SERVICE_STAGES else None

    graph: dict[str, set[str]] = {s: set() for s in SERVICE_STAGES}
    for i in ALL_IMPORTS:
        a, b = stage(i.module), stage(i.target)
        if a and b and a != b:
            graph[a].add(b)
    assert _cycle(graph) is None, graph
    assert graph["core"] == set() and "api" not in set().union(*graph.values())


def test_every_module_imports() -> None:
    failed = {}
    for name in (m for m in MODULES if not m.endswith("__main__")):  # a __main__ runs its command
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001  (the report lists every failure)
            failed[name] = f"{type(exc).__name__}: {exc}"
    assert not failed, failed


# -- extras install what the commands import ---------------------------------------------------------------------------

def _reachable(start: str) -> set[str]:
    """The project modules `start` may import when it runs (imports inside functions too), and their packages."""
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parts = m.split(".")
        todo += [p for k in range(1, len(parts)) if (p := ".".join(parts[:k])) in MODULES]  # the packages' __init__
        todo += [i.target for i in imports_of(m) if i.target in MODULES and not i.type_only]
    return seen


def _third_party(modules: set[str]) -> dict[str, str]:
    """Top-level third-party import names of these modules (not stdlib, not optional) -> where one is imported."""
    out = {}
    for i in ALL_IMPORTS:
        top = _top(i.target)
        if (i.module in modules and not i.type_only and not i.optional and top not in PACKAGES
                and top not in sys.stdlib_module_names and top != "__future__"):
            out.setdefault(top, f"{MODULES[i.module].relative_to(ROOT)}:{i.line}")
    return out


def _installed_by(requirements: list[str], extras: set[str] | None = None) -> set[str]:
    """Every distribution these requirements install, transitively (markers evaluated, extras followed)."""
    seen: set[str] = set()
    todo = [(Requirement(r), set()) for r in requirements]
    while todo:
        req, parent_extras = todo.pop()
        env_extras = parent_extras or {""}
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in env_extras):
            continue
        name = canonicalize_name(req.name)
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [(Requirement(r), set(req.extras)) for r in requires]
    return {k.split("[")[0] for k in seen}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_extra_installs_what_it_imports(name: str) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    command = COMMANDS[name]
    requirements = [*project["dependencies"], *(r for e in command.extras for r in project["optional-dependencies"][e])]
    installed = _installed_by(requirements)
    providers = metadata.packages_distributions()
    missing = {}
    for top, where in _third_party(_reachable(command.module.__name__)).items():
        dists = {canonicalize_name(d) for d in providers.get(top, [])}
        if not dists & installed:
            missing[top] = f"{where} (from {sorted(dists) or 'no installed distribution'})"
    assert not missing, f"pkdot {name}: extras {command.extras} do not install {missing}"


def test_constraints_pin_every_requirement_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.split("#")[0].strip():
            name, version = line.split("#")[0].strip().split("==")
            pins[canonicalize_name(name)] = version
    requirements = [*project["dependencies"], *(r for rs in project["optional-dependencies"].values() for r in rs)]
    unpinned = [r for r in requirements if canonicalize_name(Requirement(r).name) not in pins]
    outside = [f"{r} (pinned {pins[n]})" for r in requirements if (n := canonicalize_name(Requirement(r).name)) in pins
               and not Requirement(r).specifier.contains(pins[n], prereleases=True)]
    assert not unpinned and not outside, (unpinned, outside)
    everything = _installed_by(requirements) - {"pkdot", "pip", "setuptools"}  # the installers are the venv's own
    assert not everything - set(pins), f"installed by the extras but not pinned: {sorted(everything - set(pins))}"
