"""Finding a function by its entrypoint: `path/to/script.py:name`, `script.py:Class.method`, or
`package.module.name` (Prefect's deployment tools name flows so; `flows.py` turns what is
found here into flows).

- `import_object` runs the script (or imports the module) and walks to the object. A
  script run by path becomes a module of its own, pickled by value, so workers that cannot
  import it still get its tasks (as `procflow run` does).
- Without running the script (its imports may be missing here): `definition` finds the
  function's syntax tree; `safe_namespace` runs only the script's imports, assignments and
  `def` / `class` statements, each on its own, leaving out one that fails (never its calls,
  loops or `if __name__ == "__main__":` block); `sanitized_function` compiles a function whose
  annotations or defaults cannot be evaluated without them (a default becomes None);
  `decorator_arguments` reads the keywords of its `@flow(...)`.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Iterator

import cloudpickle

from .exceptions import ScriptError

logger = logging.getLogger("procflow.entrypoints")

FunctionDef = ast.FunctionDef | ast.AsyncFunctionDef


def split(entrypoint: str) -> tuple[str, list[str]]:
    """(the script's path or the module's name, the attribute path inside it)."""
    if ":" in entrypoint:  # the last colon: a Windows drive letter has one too
        where, name = entrypoint.rsplit(":", 1)
    elif "." in entrypoint:
        where, name = entrypoint.rsplit(".", 1)
    else:
        raise ValueError(f"Invalid format for object import. Received {entrypoint!r}.")
    return where, name.split(".")


def import_object(entrypoint: str) -> Any:
    """Prefect's `import_object`: the object at the entrypoint, its script run or its module imported."""
    where, parts = split(entrypoint)
    found: Any = load_script(where) if where.endswith(".py") else importlib.import_module(where)
    for part in parts:
        found = getattr(found, part)
    return found


def load_script(path: str) -> ModuleType:
    """The script at `path` run as a module of its own; `ScriptError` when it raises."""
    script = Path(path)
    module_name = f"procflow_script_{script.stem.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(module_name, script)
    if spec is None or spec.loader is None:
        raise ScriptError(FileNotFoundError(f"{path} cannot be loaded as a Python script"), path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    folder = str(script.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # its own imports of modules beside it
    cloudpickle.register_pickle_by_value(module)  # workers cannot import a script run by path
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        sys.modules.pop(module_name, None)
        raise ScriptError(error, path) from error
    return module


def definition(entrypoint: str) -> tuple[FunctionDef | ast.ClassDef, str, list[str]]:
    """(the syntax tree of what the entrypoint names, the source it is in, the attribute path),
    read without running anything; a method's tree when it names `Class.method`."""
    where, parts = split(entrypoint)
    if where.endswith(".py"):
        source = Path(where).read_text()
    else:
        spec = importlib.util.find_spec(where)
        if spec is None or spec.origin is None:
            raise ValueError(f"Could not find module {where!r}")
        source = Path(spec.origin).read_text()
    node = _named(ast.parse(source).body, parts[0])
    if isinstance(node, ast.ClassDef) and len(parts) > 1:
        method = _named(node.body, parts[1])
        node = method if method is not None else node
    if node is None:
        raise ValueError(f"Could not find object {'.'.join(parts)!r} in {where!r}")
    return node, source, parts


def _named(body: list[ast.stmt], name: str) -> FunctionDef | ast.ClassDef | None:
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return node
    return None


def safe_namespace(source: str, path: str | None = None) -> dict[str, Any]:
    """The script's names that can be made without running it: its imports, assignments,
    functions and classes, each tried on its own."""
    namespace: dict[str, Any] = {"__name__": "procflow_entrypoint_namespace"}
    with _beside(path):
        for node in ast.parse(source).body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    with _skipped(f"import {alias.name}"):
                        module = importlib.import_module(alias.name)
                        top = alias.name.split(".")[0]  # `import a.b` binds `a`; `import a.b as c`, `c`
                        namespace[alias.asname or top] = module if alias.asname else sys.modules[top]
            elif isinstance(node, ast.ImportFrom):
                _import_from(node, namespace, path)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                with _skipped(ast.unparse(node).splitlines()[0]):
                    exec(compile(ast.Module(body=[node], type_ignores=[]), path or "<entrypoint>", "exec"),
                         namespace)
    return namespace


def _import_from(node: ast.ImportFrom, namespace: dict[str, Any], path: str | None) -> None:
    name = node.module or ""
    with _skipped(f"from {'.' * node.level}{name} import ..."):
        if node.level:  # relative to the script's folder, as a package
            if path is None:
                raise ImportError("a relative import needs the script's path")
            package = Path(path).resolve().parent
            for _ in range(node.level - 1):
                package = package.parent
            module = importlib.import_module(f"{package.name}.{name}" if name else package.name)
        else:
            module = importlib.import_module(name)
        for alias in node.names:
            if alias.name == "*":
                namespace.update({key: value for key, value in vars(module).items() if not key.startswith("_")})
            elif hasattr(module, alias.name):
                namespace[alias.asname or alias.name] = getattr(module, alias.name)


@contextlib.contextmanager
def _beside(path: str | None) -> Iterator[None]:
    """The script's folder and its parent importable while its imports run (then as before)."""
    if path is None:
        yield
        return
    folder = Path(path).resolve().parent
    saved = list(sys.path)
    sys.path[:0] = [str(folder), str(folder.parent)]
    try:
        yield
    finally:
        sys.path[:] = saved


@contextlib.contextmanager
def _skipped(what: str) -> Iterator[None]:
    try:
        yield
    except Exception as error:  # noqa: BLE001 - left out of the namespace, as missing
        logger.debug("Left out %s: %s", what, error)


def sanitized_function(node: FunctionDef, namespace: dict[str, Any]) -> Any:
    """The function compiled in `namespace` with the annotations and defaults that cannot be
    evaluated there removed (a default becomes None); None if it still cannot be made."""
    arguments = node.args
    for argument in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                     *(a for a in (arguments.vararg, arguments.kwarg) if a is not None)):
        if argument.annotation is not None and not _evaluates(argument.annotation, namespace):
            argument.annotation = None
    arguments.defaults = [d if _evaluates(d, namespace) else ast.Constant(None) for d in arguments.defaults]
    arguments.kw_defaults = [d if d is not None and _evaluates(d, namespace) else ast.Constant(None)
                             for d in arguments.kw_defaults]
    if node.returns is not None and not _evaluates(node.returns, namespace):
        node.returns = None
    module = ast.fix_missing_locations(ast.Module(body=[node], type_ignores=[]))
    with _skipped(f"def {node.name}"):
        exec(compile(module, "<entrypoint>", "exec"), namespace)
        return namespace.get(node.name)
    return None


def _evaluates(expression: ast.expr, namespace: dict[str, Any]) -> bool:
    try:
        eval(compile(ast.fix_missing_locations(ast.Expression(expression)), "<entrypoint>", "eval"), namespace)
    except Exception:  # noqa: BLE001 - a name its missing imports would give
        return False
    return True


def decorator_arguments(entrypoint: str, names: Iterable[str]) -> dict[str, str]:
    """The keywords of the `@flow(...)` on the function the entrypoint names, as text: a
    literal as written, an expression evaluated in the script's safe namespace (one that
    cannot be is logged and left out)."""
    node, source, _ = definition(entrypoint)
    wanted = set(names)
    found: dict[str, str] = {}
    namespace: dict[str, Any] | None = None
    for decorator in node.decorator_list:
        if not (isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "flow"):
            continue
        for keyword in decorator.keywords:
            if keyword.arg not in wanted:
                continue
            if isinstance(keyword.value, ast.Constant):
                found[keyword.arg] = str(keyword.value.value)
                continue
            if namespace is None:
                namespace = safe_namespace(source, split(entrypoint)[0] if ":" in entrypoint else None)
            written = ast.get_source_segment(source, keyword.value) or ""
            try:
                found[keyword.arg] = str(eval(compile(ast.Expression(keyword.value), "<entrypoint>", "eval"),
                                              namespace))
            except Exception as error:  # noqa: BLE001 - its missing imports: the default instead
                logger.info("Failed to parse @flow argument: `%s=%s` due to the following error. Ignoring and "
                            "falling back to default behavior. (%s: %s)", keyword.arg, written.replace("\n", ""),
                            type(error).__name__, error)
    return found
