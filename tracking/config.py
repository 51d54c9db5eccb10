"""Load a run config from YAML plus dotted command-line overrides, checked against the typed schema.

Every user error becomes a `ConfigError` whose message names the field, the value
given and what is allowed, before any data is loaded or any run is created.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import reprlib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from lightning_modules.config import ConfigError, RunConfig, check_range

__all__ = [
    "ConfigError", "load_config", "config_from_dict", "config_to_dict", "flatten", "dump_yaml",
    # shared with tracking.sweep_config, which validates sweep files the same way
    "as_float", "build_dataclass", "check_tree", "parse_override", "read_yaml", "set_dotted", "show_value",
]

# Bounds on what a config may hold, checked before anything walks it recursively: a real config has a few
# hundred values a few levels deep, while YAML aliases can make a short file expand to billions of values
# (or a cycle) and deep nesting would end in a RecursionError far from the user's input.
MAX_VALUES = 100_000
MAX_DEPTH = 32
INT64 = (-(2**63), 2**63 - 1)  # what torch and numpy hold; larger integers are refused where they are read


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """The run config: the defaults, updated by the YAML file at `path`, then by `key=value` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(Path(path))
    for override in overrides:
        key, value = parse_override(override)
        set_dotted(raw, key, value)
    return config_from_dict(raw)


def config_from_dict(raw: Mapping[str, Any]) -> RunConfig:
    """Build and type-check a `RunConfig` from a nested mapping (missing keys keep their defaults)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"the config must be a mapping of sections (model, data, ...), got {show_value(raw)}")
    check_tree(raw, "the config")
    return build_dataclass(RunConfig, raw, prefix="")


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The config as plain nested dicts and lists (what `config.yaml` holds)."""
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: RunConfig) -> str:
    """The config as YAML text that `load_config` reads back to an equal config."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys: {"model": {"depth": 2}} -> {"model.depth": 2}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


class _Loader(yaml.SafeLoader):
    """yaml.safe_load's loader, except that a scalar that looks like a date or a number but cannot be one
    (2024-02-30, an integer of 5000 digits, `!!float abc`) stays the text it is, for the type check to judge
    with the field's name, instead of escaping as a bare ValueError."""


def _scalar_or_text(construct: Any) -> Any:
    def construct_or_text(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        try:
            return construct(loader, node)
        except (ValueError, OverflowError, IndexError, AttributeError):  # `!!float ''`, `!!timestamp x`
            return loader.construct_scalar(node)
    return construct_or_text


for _tag in ("int", "float", "timestamp"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}",
                            _scalar_or_text(yaml.SafeLoader.yaml_constructors[f"tag:yaml.org,2002:{_tag}"]))


def _load_yaml(text: str) -> Any:
    """safe_load through `_Loader`; whatever else PyYAML lets escape (a RecursionError for nesting deeper than
    the parser can follow, a constructor's ValueError) becomes a YAMLError, which callers turn into their
    own message."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except RecursionError:
        raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels deep") from None
    except (ValueError, TypeError, IndexError, AttributeError, OverflowError) as err:
        raise yaml.YAMLError(f"{type(err).__name__}: {err}") from None


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist (or is not a file)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text: {err}") from None
    except OSError as err:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {err.strerror or err}") from None
    try:
        raw = _load_yaml(text)
    except yaml.YAMLError as err:
        # one line: PyYAML's message spans several (the snippet and a caret), the line and column suffice
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {' '.join(str(err).split())}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections, got {show_value(raw)}")
    check_tree(raw, f"config file {str(path)!r}")
    return raw


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` as (key, value): the value read as YAML, else taken as the text it is."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {show_value(text)} must look like section.key=value, e.g. model.depth=6")
    check_tree(key, f"override {show_value(text)}")
    try:
        parsed = _load_yaml(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value  # not YAML: take the text as a string and let the type check judge it
    check_tree(parsed, f"override {show_value(key)}")
    return key, parsed


def check_tree(value: Any, where: str) -> None:
    """Raise ConfigError when `value` (parsed YAML) holds more than MAX_VALUES values once aliases are expanded,
    nests deeper than MAX_DEPTH, or holds text that is not valid Unicode (a lone surrogate: bytes that were not
    UTF-8), which neither MLflow nor config.yaml can store. Iterative, and stops at the first excess."""
    stack = [(value, 0)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"{where} holds more than {MAX_VALUES} values (counting each use of a YAML alias); "
                              "a config needs a few hundred")
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise ConfigError(f"{where}: the text {show_value(node)} is not valid Unicode (bytes that are not "
                                  "UTF-8?); use UTF-8 text") from None
        elif isinstance(node, (Mapping, list, tuple, set, frozenset)):
            if depth >= MAX_DEPTH:
                raise ConfigError(f"{where} nests more than {MAX_DEPTH} levels deep (or refers to itself through a "
                                  "YAML alias); a config needs a few")
            items = [*node.keys(), *node.values()] if isinstance(node, Mapping) else node
            stack.extend((item, depth + 1) for item in items)


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = tree
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {'.'.join(parents[: i + 1])} is a value, not a section")
        node = child
    node[leaf] = value


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    # get_type_hints evaluates every annotation string anew: ~2 ms a class, paid for each section of each config
    return typing.get_type_hints(cls)


def build_dataclass(cls: type, raw: Mapping[str, Any], prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _type_hints(cls)
    for key in raw:
        if key not in fields:
            raise ConfigError(_unknown_key(f"{prefix}{key}", str(key), list(fields), prefix))
    values = {}
    for name, spec in fields.items():
        if name not in raw:
            continue
        dotted = f"{prefix}{name}"
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(raw[name], Mapping):
                raise ConfigError(f"{dotted} = {show_value(raw[name])} must be a section (a mapping of keys)")
            values[name] = build_dataclass(hint, raw[name], dotted + ".")
        else:
            value = _coerce(raw[name], hint, dotted)
            check_range(value, spec.metadata.get("range"), dotted)
            values[name] = value
    return cls(**values)


def _unknown_key(dotted: str, key: str, allowed: list[str], prefix: str) -> str:
    section = prefix.rstrip(".") or "the config"
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
    return f"unknown key {show_value(dotted)}{hint}; the keys of {section} are: {', '.join(allowed)}"


def _coerce(value: Any, hint: Any, dotted: str) -> Any:
    """`value` as the type `hint` allows, or a ConfigError naming the field and the type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, dotted)
            except ConfigError:
                continue
        raise ConfigError(f"{dotted} = {show_value(value)}: expected {_describe(hint)}")
    if origin is Literal:
        allowed = typing.get_args(hint)
        if isinstance(value, bool):
            # YAML 1.1 reads off/on/no/yes as booleans: take the word back when the choices have it.
            words = ("off", "false", "no") if value is False else ("on", "true", "yes")
            value = next((w for w in words if w in allowed), value)
        if value not in allowed:
            close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            hint_text = f" (did you mean {close[0]!r}?)" if close else ""
            return _raise(f"{dotted} = {show_value(value)} is not allowed{hint_text}; choose one of: "
                          + ", ".join(map(str, allowed)))
        return value
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            return _raise(f"{dotted} = {show_value(value)}: expected {_describe(hint)}")
        return [_coerce(v, item, f"{dotted}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return _raise(f"{dotted} = {show_value(value)}: expected a mapping of names to values")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        return _raise(f"{dotted} = {show_value(value)}: expected true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if not INT64[0] <= value <= INT64[1]:
                return _raise(f"{dotted} = {show_value(value)}: expected an integer that fits in 64 bits "
                              f"(from {INT64[0]} to {INT64[1]})")
            return value
        return _raise(f"{dotted} = {show_value(value)}: expected an integer")
    if hint is float:
        return as_float(value, dotted)
    if hint is str:
        if isinstance(value, str) and value:
            return value
        return _raise(f"{dotted} = {show_value(value)}: expected a non-empty string")
    raise TypeError(f"config schema: no rule for type {hint!r} of {dotted}")  # a bug in the schema, not user input


def as_float(value: Any, dotted: str) -> float:
    # YAML 1.1 reads "3e-4" (no dot) as a string; accept any text that is a number.
    if isinstance(value, bool):
        return _raise(f"{dotted} = {show_value(value)}: expected a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _raise(f"{dotted} = {show_value(value)}: expected a number")
    except OverflowError:  # an integer beyond float's range
        return _raise(f"{dotted} = {show_value(value)}: expected a finite number")
    if not math.isfinite(number):
        return _raise(f"{dotted} = {show_value(value)}: expected a finite number")
    return number


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in typing.get_args(hint))
    if origin is list:
        plural = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
        return "a list of " + plural.get(typing.get_args(hint)[0], "values")
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


class _ShortRepr(reprlib.Repr):
    """repr() cut short while it is built: a value from a hostile file may be huge, self-referencing, or an
    integer too long for repr() to print at all."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxdict, self.maxlist, self.maxtuple, self.maxset = 3, 6, 8, 8, 8
        self.maxstring, self.maxother, self.maxlong = 80, 80, 40

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:
            return f"<an integer of {math.floor(x.bit_length() * math.log10(2)) + 1}+ digits>"
        return super().repr_int(x, level)

    def repr_str(self, x: str, level: int) -> str:
        text = repr(x[: self.maxstring + 1])
        return text if len(x) <= self.maxstring else text[:-1] + "..." + text[-1]


_SHORT_REPR = _ShortRepr()


def show_value(value: Any) -> str:
    """`value` as it reads in an error message: its repr, at most 80 characters, whatever it holds."""
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _raise(message: str) -> Any:
    raise ConfigError(message)
