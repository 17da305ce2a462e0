"""Prefect's `prefect.utilities.callables`: a call's arguments by parameter name."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

from ..exceptions import ParameterBindError
from ..shapes import Args, Kwargs


def get_call_parameters(fn: Callable[..., Any], call_args: Args, call_kwargs: dict[str, Any],
                        apply_defaults: bool = True) -> dict[str, Any]:
    """`fn(*call_args, **call_kwargs)`'s arguments by parameter name (defaults included unless
    `apply_defaults=False`), as Prefect's; arguments `fn` would refuse raise `ParameterBindError`."""
    target = getattr(fn, "fn", fn)  # a task or flow: its function
    try:
        bound = inspect.signature(target).bind(*call_args, **call_kwargs)
    except TypeError as error:
        raise ParameterBindError(f"Error binding parameters for function {getattr(target, '__name__', target)!r}: "
                                 f"{error}.\nFunction {getattr(target, '__name__', '')!r} has signature "
                                 f"{inspect.signature(target)!r} but received args: {call_args} and kwargs: "
                                 f"{list(call_kwargs)}.") from None
    if apply_defaults:
        bound.apply_defaults()
    return dict(bound.arguments)


def parameters_to_args_kwargs(fn: Callable[..., Any], parameters: dict[str, Any]) -> tuple[Args, Kwargs]:
    """The call that binds `parameters` (by name, a `*args` one a tuple and a `**kwargs` one a
    dict) to `fn`, as Prefect's: the inverse of `get_call_parameters`."""
    target = getattr(fn, "fn", fn)
    signature = inspect.signature(target)
    unknown = set(parameters) - set(signature.parameters)
    if unknown:
        raise ParameterBindError(f"Function {getattr(target, '__name__', target)!r} has no parameters named "
                                 f"{sorted(unknown)}")
    bound = inspect.BoundArguments(signature, dict(parameters))
    return bound.args, bound.kwargs


@dataclasses.dataclass
class ParameterSchema:
    """Prefect's: the JSON schema of a function's parameters (`parameter_schema`)."""

    title: str = "Parameters"
    type: str = "object"
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)
    required: list[str] = dataclasses.field(default_factory=list)
    definitions: dict[str, Any] = dataclasses.field(default_factory=dict)

    def model_dump(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parameter_schema(fn: Callable[..., Any]) -> ParameterSchema:
    """Prefect's: each parameter's JSON schema (from its annotation, by pydantic), its position,
    its default and its description (from the function's Google-style docstring); `self` and
    `cls` left out; a type pydantic cannot describe counts as any value."""
    import pydantic  # a schema is asked for rarely: workers and plain runs never load pydantic for it

    target = getattr(fn, "fn", fn)
    try:
        signature = inspect.signature(target, eval_str=True)
    except (NameError, TypeError):
        signature = inspect.signature(target)
    described = parameter_docstrings(inspect.getdoc(target))
    schema = ParameterSchema()
    for position, parameter in enumerate(signature.parameters.values()):
        if parameter.name in ("self", "cls"):
            continue
        annotation = Any if parameter.annotation is inspect.Parameter.empty else parameter.annotation
        field = pydantic.Field(default=... if parameter.default is inspect.Parameter.empty else parameter.default,
                               title=parameter.name, description=described.get(parameter.name),
                               json_schema_extra={"position": position})
        try:
            made = _one_parameter(pydantic, parameter.name, annotation, field)
        except Exception:  # noqa: BLE001 - pydantic cannot describe this type: any value
            made = _one_parameter(pydantic, parameter.name, Any, field)
        schema.properties[parameter.name] = made["properties"][parameter.name]
        schema.required.extend(made.get("required", []))
        schema.definitions.update(made.get("$defs", {}))
    return schema


def _one_parameter(pydantic: Any, name: str, annotation: Any, field: Any) -> dict[str, Any]:
    model = pydantic.create_model("Parameters", __config__=pydantic.ConfigDict(arbitrary_types_allowed=True),
                                  **{name: (annotation, field)})
    made: dict[str, Any] = pydantic.TypeAdapter(model).json_schema(ref_template="#/definitions/{model}")
    return made


_SECTIONS = ("Args:", "Arguments:", "Parameters:")


def parameter_docstrings(docstring: str | None) -> dict[str, str]:
    """Prefect's: the descriptions of a Google-style docstring's `Args:` section, by name
    (`name (type): text`, continued on more indented lines)."""
    found: dict[str, str] = {}
    lines = (docstring or "").splitlines()
    inside, indent, current = False, 0, None
    for line in lines:
        stripped = line.strip()
        if not inside:
            inside = stripped in _SECTIONS
            continue
        if not stripped:
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:  # the next section
            break
        if current is None or depth <= indent:
            name, colon, text = stripped.partition(":")
            if not colon:
                break
            indent, current = depth, name.split("(")[0].strip().lstrip("*")
            found[current] = text.strip()
        else:
            found[current] = f"{found[current]} {stripped}".strip()
    return found
