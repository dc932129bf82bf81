"""Reading params.yaml and validating a section by name (the stage runner calls this; the library never
opens params.yaml itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from scratchlm.config.base import ConfigError, Section, non_finite_key
from scratchlm.stages import SECTION_PATHS, section_class


def nested_params(stage: str) -> bool:
    """Whether the stage's manifest nests its params by section (it reads several): a family member
    (`scaling@<rung>`) or a section that joins others; else the manifest holds its one section's params."""
    return "@" in stage or (stage in SECTION_PATHS and hasattr(section_class(stage), "joined"))




def _format_error(section: str, error: ValidationError) -> str:
    """Turn pydantic's multi-line report into the one line a user needs: the first bad key."""
    first = error.errors()[0]
    loc = ".".join(str(part) for part in (section, *first["loc"]))
    msg = first["msg"].removeprefix("Value error, ")
    ctx = first.get("ctx") or {}
    for key, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
        if key in ctx:
            msg = f"must be {symbol} {ctx[key]}"
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{loc}: {msg}"


def parse_section(section: str, values: dict[str, Any] | None) -> Section:
    """Validate one params section; raise ConfigError with a one-line message naming the key."""
    if section not in SECTION_PATHS:
        raise ConfigError(f"{section}: unknown params section (known: {', '.join(sorted(SECTION_PATHS))})")
    if values is not None and not isinstance(values, dict):
        raise ConfigError(f"{section}: must be a mapping, got {type(values).__name__}")
    if bad := non_finite_key(values or {}, section):
        raise ConfigError(f"{bad}: must be a finite number (NaN and infinity are refused)")
    try:
        return section_class(section).model_validate(values or {})
    except ValidationError as error:
        raise ConfigError(_format_error(section, error)) from None


# --------------------------------------------------------------------------------------------
# reading params.yaml (the pipeline scripts call this; the library never opens params.yaml itself)
# --------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error, not a silent override."""


def _strict_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` merges a mapping in: not a key of this one
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            duplicate = key in seen
        except TypeError:
            continue  # an unhashable key: construct_mapping reports it
        if duplicate:
            raise ConfigError(f"{loader.name}:{line}: duplicate key {key!r} (first at line {seen[key]})")
        seen[key] = line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


def read_params_file(path: Path) -> dict[str, Any]:
    """A params YAML file as a dict; unreadable YAML or a duplicate key is a ConfigError naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read params ({str(error).splitlines()[0]})") from None
    loader = _StrictLoader(text)
    loader.name = str(path)
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: cannot read params ({str(error).splitlines()[0]})") from None
    finally:
        loader.dispose()
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping of sections, got {type(raw).__name__}")
    return raw
