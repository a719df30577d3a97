"""Strict, typed TOML configuration shared by every role.

A role declares its sections as frozen dataclasses whose fields use
:func:`setting` for bounds and patterns. :func:`parse` refuses unknown keys,
wrong types (``true`` is not an integer) and out-of-range values, raising one
:class:`ConfigError` that names the offending key, e.g.
``cameras[1].segment_seconds: must be between 1 and 10, got 0``.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from node import announce

T = TypeVar("T")

# Shared value patterns: camera and factory names (the announcement schema's, one definition);
# a listen address.
NAME = announce.NAME.pattern
HOSTPORT = r"127\.0\.0\.1:[0-9]{1,5}|\[::1\]:[0-9]{1,5}|localhost:[0-9]{1,5}|[0-9.]+:[0-9]{1,5}"


class ConfigError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


def setting(
    default: Any = dataclasses.MISSING,
    *,
    min: float | None = None,
    max: float | None = None,
    pattern: str | None = None,
    choices: tuple[str, ...] | None = None,
    secret: bool = False,
) -> Any:
    """A dataclass field with validation rules; ``secret`` hides it from repr."""
    meta = {"min": min, "max": max, "pattern": pattern, "choices": choices}
    if isinstance(default, list | dict):
        factory = default.copy
        return dataclasses.field(default_factory=factory, metadata=meta, repr=not secret)
    return dataclasses.field(default=default, metadata=meta, repr=not secret)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"unsupported union {hint} for {key}")
        return _convert(options[0], value, key)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(key, f"must be an array, got {_describe(value)}")
        return [_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return parse_section(hint, value, key)
    if hint is bool:
        if type(value) is not bool:
            raise ConfigError(key, f"must be true or false, got {_describe(value)}")
        return value
    if hint is int:
        if type(value) is not int:
            raise ConfigError(key, f"must be an integer, got {_describe(value)}")
        return value
    if hint is float:
        if type(value) not in (int, float):
            raise ConfigError(key, f"must be a number, got {_describe(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {_describe(value)}")
        return value
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(key, "must be a non-empty path string")
        return Path(value).expanduser()
    raise TypeError(f"unsupported config type {hint} for {key}")


def _check(meta: typing.Mapping[str, Any], value: Any, key: str) -> None:
    low, high = meta.get("min"), meta.get("max")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if low is not None and high is not None and not low <= value <= high:
            raise ConfigError(key, f"must be between {low:g} and {high:g}, got {value:g}")
        if low is not None and value < low:
            raise ConfigError(key, f"must be at least {low:g}, got {value:g}")
        if high is not None and value > high:
            raise ConfigError(key, f"must be at most {high:g}, got {value:g}")
    pattern = meta.get("pattern")
    if pattern and isinstance(value, str) and not re.fullmatch(pattern, value):
        raise ConfigError(key, f"{value!r} does not match {pattern}")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(key, f"must be one of {', '.join(choices)}, got {value!r}")


def parse_section(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from a TOML table, validating every key."""
    if not isinstance(data, dict):
        raise ConfigError(path, f"must be a table, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name in data:
        if name not in fields:
            raise ConfigError(_join(path, name), f"unknown key (known: {', '.join(sorted(fields))})")
    values: dict[str, Any] = {}
    for name, field in fields.items():
        key = _join(path, name)
        if name not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ConfigError(key, "is required")
            continue
        value = _convert(hints[name], data[name], key)
        _check(field.metadata, value, key)
        values[name] = value
    try:
        result = cls(**values)
    except ConfigError as exc:
        # A __post_init__ check names a key relative to the section.
        raise ConfigError(_join(path, exc.key), exc.message) from None
    return result


def load(cls: type[T], path: Path) -> T:
    """Read and validate a TOML file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("", f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path} is not valid TOML: {exc}") from None
    return parse_section(cls, data)
