"""Typed config sections built from TOML tables, with errors that name the offending key.

A section is a frozen dataclass whose fields are the settings; its defaults are the embedded
defaults. ``build(cls, table)`` checks every key and type and raises ``ConfigError`` naming
the dotted key (``irc.ping_timeout``) on an unknown key or a wrong type.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import types
import typing
from typing import TYPE_CHECKING, Any, Iterable, Mapping, TypeVar, Union, cast

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

#: a config section class (a dataclass)
Section = TypeVar("Section", bound="DataclassInstance")


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type, or has an invalid value."""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"a list of {_type_name(item)}"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        for arg in args:
            try:
                return _convert(arg, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"setting '{key}' must be {_type_name(tp)}, not {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"setting '{key}' must be {_type_name(tp)}, not {value!r}")
        return [_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"setting '{key}' must be a table, not {value!r}")
        return build(cast("type[DataclassInstance]", tp), value, key)  # a field's type: a class
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"setting '{key}' must be an integer, not {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"setting '{key}' must be {_type_name(tp)}, not {value!r}")
    return value


def build(cls: type[Section], table: Mapping[str, Any], prefix: str = "") -> Section:
    """Make a ``cls`` section from a TOML table, checking every key and type."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"unknown setting '{dotted}' (known here: {known})")
        kwargs[key] = _convert(hints[key], value, dotted)
    try:
        section = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"section '{prefix or 'top level'}': {e}") from None
    check = getattr(section, "validate", None)
    if check is not None:
        check(prefix)
    return section


# -- value checks for the sections' ``validate`` methods ----------------------------------


def _dotted(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def require_positive(prefix: str, **values: float) -> None:
    """Each named setting must be greater than 0."""
    for name, value in values.items():
        if value <= 0:
            raise ConfigError(f"setting '{_dotted(prefix, name)}' must be greater than 0, not {value!r}")


def require_at_least(prefix: str, minimum: float, **values: float) -> None:
    """Each named setting must be at least ``minimum`` (0: not negative)."""
    for name, value in values.items():
        if value < minimum:
            raise ConfigError(f"setting '{_dotted(prefix, name)}' must be at least {minimum:g}, not {value!r}")


def require_one_of(prefix: str, name: str, value: str, choices: Iterable[str]) -> None:
    """The setting must be one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        listed = ", ".join(f'"{c}"' for c in choices)
        raise ConfigError(f"setting '{_dotted(prefix, name)}' must be one of {listed}, not {value!r}")


def require_networks(prefix: str, name: str, values: Iterable[str]) -> None:
    """Each entry must be an IP address or a CIDR network (``ipaddress.ip_network``)."""
    for i, value in enumerate(values):
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ConfigError(
                f"setting '{_dotted(prefix, name)}[{i}]' must be an IP address or CIDR network, not {value!r}"
            ) from None
