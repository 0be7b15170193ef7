"""Which `AshError`s a route's handler can raise, read from the source: the handler, its dependencies and every
function of the server they call, followed through parameter and attribute annotations, `self.x = ...` in
constructors and return annotations. Errors caught on the way (`except NotFound:` around a call) are taken off,
unless the handler raises again.

An over-approximation where Python is dynamic (a call on an interface follows every implementation), and blind to
what it cannot resolve (callbacks, locals bound to what an unannotated function returns): tests/api/test_fuzz.py
checks the other direction, every status the running server answers.
"""

from __future__ import annotations

import ast
import builtins
import functools
import inspect
import textwrap
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi.dependencies.models import Dependant

from ash_server.errors import AshError

PACKAGE = "ash_server"


@dataclass(frozen=True)
class Instance:
    """A value of a class (as opposed to the class itself)."""

    cls: type


Thing = Instance | type | types.FunctionType | types.ModuleType


def _ours(obj: object) -> bool:
    module = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
    return isinstance(module, str) and (module == PACKAGE or module.startswith(PACKAGE + "."))


def _types_of(annotation: Any) -> set[type]:
    """The server's classes an annotation names (through Annotated, Optional, unions, Awaitable[...])."""
    if annotation is None or isinstance(annotation, str):
        return set()
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _types_of(typing.get_args(annotation)[0])
    if origin is not None:
        found: set[type] = set()
        for arg in typing.get_args(annotation):
            found |= _types_of(arg)
        if isinstance(origin, type) and _ours(origin):
            found.add(origin)
        return found
    if isinstance(annotation, type) and _ours(annotation):
        return {annotation}
    return set()


def _hints(obj: Any) -> dict[str, Any]:
    """Annotations evaluated one by one (some name TYPE_CHECKING-only imports and cannot be)."""
    raw = getattr(obj, "__annotations__", {}) or {}
    scope = dict(getattr(inspect.unwrap(obj), "__globals__", None) or vars(inspect.getmodule(obj) or builtins))
    if isinstance(obj, type):
        scope.update(vars(obj))
    hints: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, str):
            try:
                value = eval(value, scope)
            except Exception:
                continue
        hints[name] = value
    return hints


def _subclasses(cls: type) -> set[type]:
    found = {cls}
    for sub in cls.__subclasses__():
        found |= _subclasses(sub)
    return found


class Analysis:
    def __init__(self) -> None:
        self._raises: dict[Callable[..., Any], frozenset[type[AshError]]] = {}
        self._active: set[Callable[..., Any]] = set()

    # ---- what a function raises

    def raises(self, function: Callable[..., Any]) -> frozenset[type[AshError]]:
        function = inspect.unwrap(function)
        if isinstance(function, functools.partial):
            function = function.func
        if not isinstance(function, types.FunctionType) or not _ours(function):
            return frozenset()
        if function in self._raises:
            return self._raises[function]
        if function in self._active:
            return frozenset()  # recursion: what it raises is being gathered further up
        self._active.add(function)
        try:
            found = frozenset(self._gather(function))
        finally:
            self._active.discard(function)
        self._raises[function] = found
        return found

    def dependant(self, dependant: Dependant) -> frozenset[type[AshError]]:
        found: set[type[AshError]] = set()
        if dependant.call is not None:
            found |= self.raises(dependant.call)
        for sub in dependant.dependencies:
            found |= self.dependant(sub)
        return frozenset(found)

    def _gather(self, function: types.FunctionType) -> set[type[AshError]]:
        try:
            source = textwrap.dedent(inspect.getsource(function))
        except (OSError, TypeError):
            return set()
        tree = ast.parse(source)
        node = tree.body[0]
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return set()
        scope = _Scope.of(function)
        found: set[type[AshError]] = set()
        self._walk(node.body, scope, caught=frozenset(), found=found)
        return found

    def _walk(
        self, nodes: Iterable[ast.AST], scope: _Scope, *, caught: frozenset[type], found: set[type[AshError]]
    ) -> None:
        for node in nodes:
            self._visit(node, scope, caught=caught, found=found)

    def _visit(self, node: ast.AST, scope: _Scope, *, caught: frozenset[type], found: set[type[AshError]]) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            return  # defined here, run later (if at all) by someone else
        if isinstance(node, ast.Try | ast.TryStar):
            inner = set(caught)
            for handler in node.handlers:
                if _reraises(handler):
                    continue
                inner |= self._caught_by(handler, scope)
            self._walk(node.body, scope, caught=frozenset(inner), found=found)
            for part in (*node.handlers, *node.orelse, *node.finalbody):
                self._visit(part, scope, caught=caught, found=found)
            return
        if isinstance(node, ast.Raise) and node.exc is not None:
            for thing in self._resolve(node.exc, scope):
                cls = thing.cls if isinstance(thing, Instance) else thing
                if isinstance(cls, type) and issubclass(cls, AshError):
                    found.add(cls)
        if isinstance(node, ast.Assign | ast.AnnAssign):
            self._bind(node, scope)
        if isinstance(node, ast.Call):
            for thing in self._resolve(node.func, scope):
                if isinstance(thing, types.FunctionType):
                    found |= {c for c in self.raises(thing) if not _is_caught(c, caught)}
                elif isinstance(thing, type) and _ours(thing) and "__init__" in vars(thing):
                    found |= {c for c in self.raises(vars(thing)["__init__"]) if not _is_caught(c, caught)}
        for child in ast.iter_child_nodes(node):
            self._visit(child, scope, caught=caught, found=found)

    def _caught_by(self, handler: ast.ExceptHandler, scope: _Scope) -> set[type]:
        if handler.type is None:
            return {BaseException}
        names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        classes: set[type] = set()
        for name in names:
            for thing in self._resolve(name, scope):
                if isinstance(thing, type) and issubclass(thing, BaseException):
                    classes.add(thing)
        return classes

    def _bind(self, node: ast.Assign | ast.AnnAssign, scope: _Scope) -> None:
        """`x = Something(...)`, `x: T = ...`: what a local name holds from here on, where that can be told."""
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if isinstance(node, ast.AnnAssign):
            things: set[Thing] = {Instance(t) for t in _types_of(scope.evaluate(node.annotation))}
        else:
            things = self._resolve(node.value, scope) if node.value is not None else set()
        for target in targets:
            if isinstance(target, ast.Name) and things:
                scope.locals[target.id] = things

    # ---- what an expression is

    def _resolve(self, expr: ast.expr, scope: _Scope) -> set[Thing]:
        if isinstance(expr, ast.Await):
            return self._resolve(expr.value, scope)
        if isinstance(expr, ast.Name):
            return scope.lookup(expr.id)
        if isinstance(expr, ast.Attribute):
            found: set[Thing] = set()
            for owner in self._resolve(expr.value, scope):
                found |= self._attribute(owner, expr.attr)
            return found
        if isinstance(expr, ast.Call):
            found = set()
            for thing in self._resolve(expr.func, scope):
                if isinstance(thing, type):
                    found.add(Instance(thing))
                elif isinstance(thing, types.FunctionType):
                    returns = _hints(thing).get("return")
                    found |= {Instance(t) for t in _types_of(returns)}
            return found
        return set()

    def _attribute(self, owner: Thing, name: str) -> set[Thing]:
        if isinstance(owner, types.ModuleType):
            value = getattr(owner, name, None)
            return {value} if isinstance(value, type | types.FunctionType | types.ModuleType) else set()
        if isinstance(owner, type):
            value = inspect.getattr_static(owner, name, None)
            if isinstance(value, staticmethod | classmethod):
                value = value.__func__
            return {value} if isinstance(value, type | types.FunctionType) else set()
        if not isinstance(owner, Instance):
            return set()
        found: set[Thing] = set()
        # An interface: every implementation the server has.
        for cls in _subclasses(owner.cls) if _ours(owner.cls) else {owner.cls}:
            found |= self._member(cls, name)
        return found

    def _member(self, cls: type, name: str) -> set[Thing]:
        for klass in cls.__mro__:
            if name in vars(klass):
                value = vars(klass)[name]
                if isinstance(value, property):
                    getter = value.fget
                    hints = _hints(getter) if getter is not None else {}
                    return {Instance(t) for t in _types_of(hints.get("return"))}
                if isinstance(value, staticmethod | classmethod):
                    value = value.__func__
                if isinstance(value, types.FunctionType):
                    return {value}
            annotation = _hints(klass).get(name)
            if annotation is not None:
                return {Instance(t) for t in _types_of(annotation)}
        for klass in cls.__mro__:
            init = vars(klass).get("__init__")
            if isinstance(init, types.FunctionType) and _ours(init):
                assigned = self._assigned_in(init, name)
                if assigned:
                    return assigned
        return set()

    @functools.cache  # noqa: B019 - one Analysis per test run
    def _assigned_in(self, init: types.FunctionType, name: str) -> frozenset[Thing]:
        """What `self.<name> = ...` in a constructor puts there."""
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
        except (OSError, TypeError):
            return frozenset()
        scope = _Scope.of(init)
        found: set[Thing] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if (
                        isinstance(target, ast.Attribute)
                        and target.attr == name
                        and isinstance(target.value, ast.Name)
                        and target.value.id == "self"
                    ):
                        if isinstance(node, ast.AnnAssign):
                            found |= {Instance(t) for t in _types_of(scope.evaluate(node.annotation))}
                        if node.value is not None:
                            found |= self._resolve(node.value, scope)
        return frozenset(found)


class _Scope:
    def __init__(self, function: types.FunctionType, params: dict[str, set[Thing]]) -> None:
        self.function = function
        self.locals: dict[str, set[Thing]] = dict(params)

    @classmethod
    def of(cls, function: types.FunctionType) -> _Scope:
        hints = _hints(function)
        params: dict[str, set[Thing]] = {}
        for name in inspect.signature(function).parameters:
            if name in hints:
                params[name] = {Instance(t) for t in _types_of(hints[name])}
        owner = _owner_class(function)
        if owner is not None:
            params["self"] = {Instance(owner)}
            params["cls"] = {owner}
        return cls(function, params)

    def lookup(self, name: str) -> set[Thing]:
        if name in self.locals:
            return self.locals[name]
        value = self.function.__globals__.get(name)
        if value is None and self.function.__closure__:
            free = dict(zip(self.function.__code__.co_freevars, self.function.__closure__, strict=False))
            if name in free:
                try:
                    value = free[name].cell_contents
                except ValueError:
                    value = None
        if isinstance(value, type | types.FunctionType | types.ModuleType):
            return {value}
        return set()

    def evaluate(self, annotation: ast.expr) -> Any:
        try:
            return eval(ast.unparse(annotation), dict(self.function.__globals__))
        except Exception:
            return None


def _owner_class(function: types.FunctionType) -> type | None:
    parts = function.__qualname__.split(".")
    if len(parts) < 2 or "<locals>" in parts:
        return None
    owner: Any = inspect.getmodule(function)
    for part in parts[:-1]:
        owner = getattr(owner, part, None)
    return owner if isinstance(owner, type) else None


def _reraises(handler: ast.ExceptHandler) -> bool:
    """A handler that raises again (bare `raise`, or `raise exc`) does not stop what it caught."""
    for node in ast.walk(handler):
        if isinstance(node, ast.Raise) and (
            node.exc is None or (isinstance(node.exc, ast.Name) and node.exc.id == handler.name)
        ):
            return True
    return False


def _is_caught(cls: type, caught: frozenset[type]) -> bool:
    return any(issubclass(cls, c) for c in caught)
