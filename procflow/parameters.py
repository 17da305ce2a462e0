"""A flow's parameters checked and converted by their annotations, as Prefect does with pydantic.

`x: int` called with `"5"` gets `5`; `y: list[int]` with `["2", "3"]` gets `[2, 3]`; a dict for a
pydantic model parameter becomes the model; a value that cannot be converted fails the flow
run with `ParameterTypeError` before its function runs (its `on_failure` hooks run, as in
Prefect). Defaults are converted too when they can be (a dict default of a model parameter
becomes the model, as Prefect validates the defaults it applies), and left as written when they
cannot (`x: int = None` is no error); `validate_parameters=False` turns it off. A value
already of its annotation's exact class (or an instance of a class pydantic would only check
with `isinstance`, such as `numpy.ndarray`) is passed as is, without importing pydantic, so the
common call costs nothing and an array is never copied.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Callable

from .exceptions import ParameterTypeError

_VALIDATOR_NAMES = frozenset({"v__args", "v__kwargs", "v__positional_only", "v__duplicate_kwargs"})
_SCALARS = (int, float, str, bool, bytes)  # pydantic converts between these: never pass them by isinstance


class ParameterValidator:
    """One flow function's parameter checks, each made on first use and kept."""

    def __init__(self, fn: Callable[..., Any], signature: inspect.Signature) -> None:
        self._signature = signature
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception:  # noqa: BLE001 - an annotation naming what is not importable here: use them as written
            hints = {}
        self._annotations = {name: hints.get(name, parameter.annotation)
                             for name, parameter in signature.parameters.items()
                             if parameter.annotation is not inspect.Parameter.empty}
        self._models: dict[str, Any] = {}

    def check_names(self) -> None:
        """Prefect refuses, at decoration, the names its validator keeps for itself."""
        taken = sorted(_VALIDATOR_NAMES.intersection(self._signature.parameters))
        if taken:
            raise ValueError(f"Flow function is not compatible with `validate_parameters`. Disable validation "
                             f"or change the argument names: {', '.join(taken)}.")

    def validate(self, passed: dict[str, Any]) -> dict[str, Any]:
        """`passed` (parameter name -> value, as bound) with each value converted by its annotation."""
        if not self._annotations:
            return passed
        converted = dict(passed)
        problems: list[str] = []
        for name, value in passed.items():
            annotation = self._annotations.get(name)
            unchecked = annotation is None or annotation is Any or isinstance(annotation, str)
            if unchecked or _passes_as_is(annotation, value):
                continue
            model = self._model(name)
            if model is None:
                continue
            import pydantic

            try:
                converted[name] = model.model_validate({"value": value}).value
            except pydantic.ValidationError as error:
                for detail in error.errors():
                    where = ".".join(str(part) for part in (name, *detail["loc"][1:]))
                    problems.append(f"{where}: {detail['msg']}")
        if problems:
            raise ParameterTypeError("Flow run received invalid parameters:\n - " + "\n - ".join(problems))
        return converted

    def convert_defaults(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """`defaults` (the defaults a call left, by name), each converted by its annotation when
        it can be, else as written."""
        converted = dict(defaults)
        for name, value in defaults.items():
            if value is None:  # `x: int = None`, `y: str | None = None`: nothing to convert, no pydantic to load
                continue
            try:
                converted.update(self.validate({name: value}))
            except ParameterTypeError:
                pass
        return converted

    def _model(self, name: str) -> Any:
        """A one-field pydantic model for parameter `name` (None: its annotation is not one pydantic reads)."""
        if name not in self._models:
            import pydantic

            annotation = self._annotations[name]
            kind = self._signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                annotation = tuple[annotation, ...]  # type: ignore[valid-type]
            elif kind is inspect.Parameter.VAR_KEYWORD:
                annotation = dict[str, annotation]  # type: ignore[valid-type]
            try:
                self._models[name] = pydantic.create_model(
                    f"Parameter_{name}", __config__=pydantic.ConfigDict(arbitrary_types_allowed=True),
                    value=(annotation, ...))
            except Exception:  # noqa: BLE001 - pydantic cannot build a check for it: passed as given
                self._models[name] = None
        return self._models[name]


def _passes_as_is(annotation: Any, value: Any) -> bool:
    if not isinstance(annotation, type):
        return False
    if type(value) is annotation:
        return True
    return annotation not in _SCALARS and isinstance(value, annotation) and not _is_model(annotation)


def _is_model(annotation: type) -> bool:
    """A pydantic model class (checked without importing pydantic when it was never imported)."""
    return any(base.__module__.startswith("pydantic") for base in annotation.__mro__[1:])
