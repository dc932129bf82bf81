"""Named parameter overrides (`pipelines/profiles/NAME.yaml`) merged into `params.yaml`.

The merge is a round trip through ruamel.yaml, so the comments and key order of `params.yaml`
survive, and the result is validated section by section before the file is replaced.
"""

from __future__ import annotations

import io
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from scratchlm.config import ConfigError, parse_section, read_params_file
from scratchlm.io import atomic_write_text


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 120
    return yaml


def available(profiles_dir: Path) -> list[str]:
    return sorted(p.stem for p in profiles_dir.glob("*.yaml"))


def deep_merge(base: MutableMapping[str, Any], overrides: MutableMapping[str, Any], path: str = "") -> None:
    """Merge `overrides` into `base` in place; mappings merge key by key, anything else replaces."""
    for key, value in overrides.items():
        if isinstance(value, MutableMapping) and isinstance(base.get(key), MutableMapping):
            deep_merge(base[key], value, f"{path}{key}.")
        else:
            base[key] = value


def apply_profile(params_file: Path, profile_file: Path) -> list[str]:
    """Merge a profile into params.yaml atomically; returns the sections it touched."""
    if not profile_file.is_file():
        raise ConfigError(f"{profile_file}: no such profile")
    for path in (params_file, profile_file):
        read_params_file(path)  # one line naming a duplicate key (and its line), a NaN is caught below
    yaml = _yaml()
    params, overrides = _load(yaml, params_file), _load(yaml, profile_file)
    deep_merge(params, overrides)
    for section in overrides:
        parse_section(section, _plain(params[section]))
    buffer = io.StringIO()
    yaml.dump(params, buffer)
    atomic_write_text(params_file, buffer.getvalue())
    return list(overrides)


def _load(yaml: YAML, path: Path) -> Any:
    from ruamel.yaml import YAMLError

    try:
        return yaml.load(path.read_text(encoding="utf-8")) or {}
    except (OSError, YAMLError) as error:
        raise ConfigError(f"{path}: cannot read ({str(error).strip().splitlines()[0]})") from None


def _plain(node: Any) -> Any:
    """ruamel's commented containers as plain dicts/lists, for pydantic."""
    if isinstance(node, MutableMapping):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    return node
