"""Named parameter overrides (`pipelines/profiles/NAME.yaml`) merged into `params.yaml`.

The merge is a round trip through ruamel.yaml, so the comments and key order of `params.yaml`
survive, and the result is validated section by section before the file is replaced.

A merge can only add or change keys, so a profile that must take something out (the default pretraining
sources, for a corpus of its own) lists it under `remove:`, as dotted paths
(`download.sources.wiki_summaries`). Removals apply before the merge, so removing a key and setting it
replaces it whole. A path already gone is fine (applying a profile twice gives the same file), but its
parent must be there: a misspelt section or source name is an error, not a silent no-op.
"""

from __future__ import annotations

import io
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from scratchlm.config.base import ConfigError
from scratchlm.config.loader import parse_section, read_params_file
from scratchlm.io import atomic_write_text

REMOVE = "remove"  # a profile's list of dotted paths to take out of params.yaml (no params section has this name)


def _yaml() -> YAML:
    """A round-trip YAML that writes back what it read: `null` stays `null` (ruamel writes an empty value,
    which reads the same but hides what the comments beside it explain) and no long string is folded."""
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.representer.add_representer(type(None), _represent_null)
    return yaml


def _represent_null(representer: Any, _: None) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def available(profiles_dir: Path) -> list[str]:
    return sorted(p.stem for p in profiles_dir.glob("*.yaml"))


def deep_merge(base: MutableMapping[str, Any], overrides: MutableMapping[str, Any], path: str = "") -> None:
    """Merge `overrides` into `base` in place; mappings merge key by key, anything else replaces."""
    for key, value in overrides.items():
        if isinstance(value, MutableMapping) and isinstance(base.get(key), MutableMapping):
            deep_merge(base[key], value, f"{path}{key}.")
        else:
            base[key] = value


def remove_paths(base: MutableMapping[str, Any], paths: list[str], where: str) -> list[str]:
    """Delete each dotted path from `base` in place; returns the sections they lie in.

    A path whose last key is already absent is skipped; one whose parent is not a mapping in `base` is a
    ConfigError naming it (`where`: the profile), so a typo never leaves a source in silently."""
    if not isinstance(paths, list) or not all(isinstance(path, str) and path for path in paths):
        raise ConfigError(f"{where}: remove must be a list of dotted key paths (download.sources.NAME)")
    sections = []
    for path in paths:
        *parents, leaf = path.split(".")
        parent = _lookup(base, parents)
        if not isinstance(parent, MutableMapping):
            raise ConfigError(f"{where}: remove {path}: params has no mapping {'.'.join(parents) or '(top)'}")
        parent.pop(_key(parent, leaf), None)
        sections.append(path.split(".")[0])
    return list(dict.fromkeys(sections))


def _lookup(node: Any, keys: list[str]) -> Any:
    """The value at `keys` under `node`, None where a key is missing."""
    for key in keys:
        if not isinstance(node, MutableMapping):
            return None
        node = node.get(_key(node, key))
    return node


def _key(mapping: MutableMapping[Any, Any], name: str) -> Any:
    """The key of `mapping` that a path segment names (YAML keys may be numbers: `max_top_ngram_ratio.2`)."""
    return next((key for key in mapping if str(key) == name), name)


def apply_profile(params_file: Path, profile_file: Path) -> list[str]:
    """Take out the profile's `remove:` paths, merge the rest into params.yaml, validate the sections
    touched and write the file atomically; returns those sections."""
    if not profile_file.is_file():
        raise ConfigError(f"{profile_file}: no such profile")
    for path in (params_file, profile_file):
        read_params_file(path)  # one line naming a duplicate key (and its line), a NaN is caught below
    yaml = _yaml()
    params, overrides = _load(yaml, params_file), _load(yaml, profile_file)
    removed = remove_paths(params, _plain(overrides.pop(REMOVE, None) or []), str(profile_file))
    deep_merge(params, overrides)
    sections = list(dict.fromkeys([*overrides, *removed]))
    for section in sections:
        parse_section(section, _plain(params.get(section)))
    buffer = io.StringIO()
    yaml.dump(params, buffer)
    atomic_write_text(params_file, buffer.getvalue())
    return sections


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
