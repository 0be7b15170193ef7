"""Imports go one way: bridge ← server (protocol only); the domain never imports the web framework."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imports_of(folder: Path) -> dict[Path, set[str]]:
    found: dict[Path, set[str]] = {}
    for path in folder.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from pkg import mod` may import a module: record pkg.mod too, so the check sees what it is.
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[path] = names
    return found


def test_bridge_needs_only_the_standard_library_and_the_sdk() -> None:
    allowed_third_party = {"claude_agent_sdk", "uvloop"}
    for path, names in imports_of(ROOT / "bridge" / "ash_bridge").items():
        for name in names:
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or top in allowed_third_party or top == "ash_bridge", (path, name)


def test_bridge_protocol_needs_only_the_standard_library() -> None:
    for name in imports_of(ROOT / "bridge" / "ash_bridge")[ROOT / "bridge" / "ash_bridge" / "protocol.py"]:
        assert name.split(".")[0] in sys.stdlib_module_names, name


def test_server_uses_only_the_bridge_protocol() -> None:
    for path, names in imports_of(ROOT / "server" / "ash_server").items():
        for name in names:
            if name.startswith("ash_bridge"):
                assert name.startswith("ash_bridge.protocol"), (path, name)


def test_domain_does_not_import_the_web_framework() -> None:
    server = ROOT / "server" / "ash_server"
    for path, names in imports_of(server).items():
        # The HTTP layers: api/ (routes, middleware), and the dashboard's (its sign-in and pages).
        where = path.relative_to(server)
        web = where.parts[0] == "api" or where.as_posix() in {"dashboard/signin.py", "dashboard/pages.py"}
        if web or path.name in {"app.py", "server.py", "__main__.py"}:
            continue
        for name in names:
            assert name.split(".")[0] not in {"fastapi", "starlette", "uvicorn"}, (path, name)


# Each layer imports only those below it: api -> sessions -> sandbox / gateway / snapshots -> store (and the
# modules every layer may use: states, errors, paths, observability, settings). Run-time callbacks go through
# arguments typed by the lower layer (the evictor the pool is handed, the on_exited of a sandbox start, the warm
# pool's preparer), never an import up or an attribute set after construction.
LAYERS = {
    "store": {"api", "sessions", "sandbox", "gateway", "snapshots", "cluster", "dashboard", "evals"},
    "sandbox": {"api", "sessions", "cluster", "dashboard", "evals"},
    "gateway": {"api", "sessions", "sandbox", "cluster", "dashboard", "evals"},
    "snapshots": {"api", "sessions", "sandbox", "cluster", "dashboard", "evals"},
    "sessions": {"api", "cluster", "dashboard", "evals"},
}


def _server_imports(path: Path) -> set[str]:
    """The ash_server subpackages a module imports (relative imports resolved)."""
    server = ROOT / "server" / "ash_server"
    package = path.relative_to(server).parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                target = [*base, *(node.module.split(".") if node.module else [])]
                names = [target] if node.module else [[*base, a.name] for a in node.names]
            elif node.module and node.module.startswith("ash_server."):
                names = [node.module.split(".")[1:]]
            else:
                continue
            found.update(parts[0] for parts in names if parts)
    return found


def test_layers_import_only_downwards() -> None:
    server = ROOT / "server" / "ash_server"
    wrong = []
    for layer, above in LAYERS.items():
        for path in (server / layer).rglob("*.py"):
            for imported in _server_imports(path) & above:
                wrong.append(f"{path.relative_to(server)} imports {imported}")
    assert not wrong, "\n".join(wrong)


def _root(node: ast.expr) -> tuple[str | None, int]:
    """The name an attribute chain starts from, and its length (`self.a.b`: ("self", 2))."""
    depth = 0
    while isinstance(node, ast.Attribute):
        node, depth = node.value, depth + 1
    return (node.id if isinstance(node, ast.Name) else None), depth


def test_no_callback_is_wired_into_another_object_after_construction() -> None:
    """A part's callbacks come in through its constructor or the call that needs them: nothing assigns one of its
    own methods (`self.x`, `self.part.method`) or a lambda onto another object's attribute."""
    server = ROOT / "server" / "ash_server"
    trees = {path: ast.parse(path.read_text()) for path in server.rglob("*.py")}
    functions = {
        node.name
        for tree in trees.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    wired = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                if not isinstance(target, ast.Attribute):
                    continue
                root, depth = _root(target)
                if root == "self" and depth == 1:
                    continue  # its own attribute
                value = node.value
                method = isinstance(value, ast.Attribute) and _root(value)[0] == "self" and value.attr in functions
                if method or isinstance(value, ast.Lambda):
                    wired.append(f"{path.relative_to(server)}:{node.lineno}: {ast.unparse(node)}")
    assert not wired, "\n".join(wired)
