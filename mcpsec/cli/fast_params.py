"""Coerce plain option values without pydantic, which Typer 0.29 imports to parse any option.

Typer builds a pydantic `TypeAdapter` the first time it coerces a value (even an absent
`str | None`), and importing pydantic costs more than importing Typer itself: `mcpsec pkce
generate` ran at 2.9x `python -c "import typer"`. Our commands take plain `str`, `int`,
`float` and `Path` options, which need nothing more than a constructor call, so those get a
direct coercer; anything with ranges, choices, path checks, files or lists still goes
through Typer's own. This touches a private Typer seam, so Typer is pinned below 0.30 and
`tests/cli/test_startup_imports.py` fails if pydantic comes back.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from typer import BadParameter
from typer import core as typer_core
from typer._coercion import RuntimeParam, TypeDescriptor

_PLAIN: dict[Any, str] = {
    str: "text",
    int: "integer",
    float: "number",
    Path: "path",
    bool: "boolean",
}
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})
# ParameterInfo attributes whose non-default value means Typer must do the checking.
_CHECKS: dict[str, Any] = {
    "min": None,
    "max": None,
    "parser": None,
    "click_type": None,
    "exists": False,
    "resolve_path": False,
    "file_okay": True,
    "dir_okay": True,
    "writable": False,
    "readable": True,
    "allow_dash": False,
}


@dataclass(frozen=True)
class PlainRuntimeParam(RuntimeParam):
    convert: Callable[[Any], Any]
    label: str

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            return self.convert(value)
        except (TypeError, ValueError):
            raise BadParameter(
                f"{value!r} is not a valid {self.label}", ctx=ctx, param=param
            ) from None


def install() -> None:
    """Route plain annotations to `PlainRuntimeParam`; idempotent."""
    original = typer_core.build_runtime_param  # type: ignore[attr-defined]
    if getattr(original, "mcpsec_plain", False):
        return

    def build(descriptor: TypeDescriptor) -> RuntimeParam:
        plain = _plain_type(descriptor)
        if plain is None:
            return original(descriptor)
        return PlainRuntimeParam(
            annotation=descriptor.annotation,
            parameter_info=descriptor.parameter_info,
            convert=_to_bool if plain is bool else plain,
            label=_PLAIN[plain],
        )

    build.mcpsec_plain = True  # type: ignore[attr-defined]
    typer_core.build_runtime_param = build  # type: ignore[attr-defined]


def _to_bool(value: Any) -> bool:
    """Flags arrive as bools; a boolean from an environment variable arrives as text."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(value)


def _plain_type(descriptor: TypeDescriptor) -> Any | None:
    if descriptor.is_choice or descriptor.is_file or descriptor.is_list or descriptor.is_tuple:
        return None
    info = descriptor.parameter_info
    if any(getattr(info, name, default) != default for name, default in _CHECKS.items()):
        return None
    annotation = _without_none(descriptor.annotation)
    return annotation if annotation in _PLAIN else None


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        return members[0] if len(members) == 1 else annotation
    return annotation
