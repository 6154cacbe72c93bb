"""Checking a JSON object against a config dataclass's annotations, so that a value of the wrong type
(`"height": "64"`, `"lr": NaN`, an unknown `mixed_precision`) is one line naming the key, not a traceback
from deep inside the run."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from videoscene.errors import InputError


def check_json_types(cls: type, data: dict[str, Any], source: str) -> None:
    """Raise `InputError` for the first key of `data` whose value does not fit `cls`'s annotation of it.
    Keys that are not fields are left to the caller (each config words its unknown-key error)."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in data and not _fits(data[field.name], hints[field.name]):
            raise InputError(
                f"{source}: {field.name!r} must be {_describe(hints[field.name])}, got {data[field.name]!r}"
            )


def with_tuples(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """`data` with the JSON lists of `cls`'s tuple fields (`tuple[...]`, `tuple[...] | None`) as tuples, as
    their annotations (and the runtime checks of the tests) say."""
    hints = typing.get_type_hints(cls)
    converted = dict(data)
    for field in dataclasses.fields(cls):
        annotation = hints[field.name]
        options = (
            typing.get_args(annotation)
            if typing.get_origin(annotation) in (Union, types.UnionType)
            else (annotation,)
        )
        if isinstance(data.get(field.name), list) and any(
            typing.get_origin(option) is tuple for option in options
        ):
            converted[field.name] = tuple(data[field.name])
    return converted


def _fits(value: Any, annotation: Any) -> bool:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return True
    if annotation is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if annotation in (str, Path):
        return isinstance(value, str)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
        return all(_fits(v, args[0]) for v in value) if args else True
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if dataclasses.is_dataclass(annotation):
        return isinstance(value, (dict, annotation))
    return True  # an annotation this checker does not know: the dataclass's own checks decide


def _describe(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if annotation is type(None):
        return "null"
    if origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
        return f"a list of {_describe(args[0])}" if args else "a list"
    names = {
        bool: "true or false",
        int: "a whole number",
        float: "a number (not NaN)",
        str: "a string",
        Path: "a path string",
    }
    return names.get(
        annotation,
        "a JSON object" if origin is dict or dataclasses.is_dataclass(annotation) else str(annotation),
    )
