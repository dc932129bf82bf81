"""The params reference, `docs/params.md`, generated from the models of scratchlm.config.

One section per params.yaml section (in the stage registry's order, `scratchlm.stages`), a table per
model: each key (dotted
below a nested model), its type, default, range and description. `tests/test_params_doc.py` fails when
the committed file is not what `render()` gives, so the reference never drifts from the schema:

    python -m scratchlm.params_doc --write   # regenerate docs/params.md
    python -m scratchlm.params_doc --check   # exit 1 when it is stale
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from scratchlm.config.base import EXECUTION, Section
from scratchlm.stages import all_sections

#: Where `--write` and `--check` look by default: docs/params.md at the repository root.
DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "params.md"
COMMAND = "python -m scratchlm.params_doc --write"
EXECUTION_NOTE = "does not change output bytes: left out of the manifest"

HEADER = f"""# params.yaml reference

<!-- Generated from src/scratchlm/config/ by `{COMMAND}`: do not edit by hand. -->

Every section of `params.yaml` (and of a profile, `pipelines/profiles/*.yaml`) is validated by its model in
`scratchlm.config` before a stage does any work: an unknown key or a value out of range stops it with a
one-line message naming the key. Keys below a nested model are dotted (`model.n_layer` is `n_layer` under
`model:`); `<name>` stands for a key you choose (a source, a rung).

Keys marked **execution** change how a stage runs, never what it writes: they are left out of the
manifest, so the same outputs built with other values (1 or 8 workers) keep the same DVC hash.
"""


def render() -> str:
    """The whole reference as Markdown; the same text for the same models, byte for byte."""
    parts = [HEADER]
    for section, model in all_sections().items():
        parts.append(f"## `{section}`\n\n{_cell(_doc(model))}\n")
        parts.extend(_tables(model, section, ""))
    return "\n".join(parts)


def _tables(model: type[Section], section: str, prefix: str) -> list[str]:
    """The table of `model`'s fields (keys prefixed with `prefix`), then one sub-table per nested model."""
    schema = model.model_json_schema(mode="validation")
    properties = schema.get("properties", {})
    rows = ["| key | type | default | constraints | description |", "|---|---|---|---|---|"]
    nested: list[tuple[str, type[Section]]] = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        inner, via_dict = _nested_model(info.annotation)
        if inner is not None:
            nested.append((f"{key}.<name>." if via_dict else f"{key}.", inner))
        description = info.description or ""
        if (info.json_schema_extra or {}) == EXECUTION:
            description = f"**execution** ({EXECUTION_NOTE}). {description}"
        cells = [f"`{key}`", _cell(_type(info.annotation)), _default(info, inner),
                 _cell(_constraints(properties.get(name, {}))), _cell(description)]
        rows.append("| " + " | ".join(cells) + " |")
    out = ["\n".join(rows) + "\n"]
    for sub_prefix, inner in nested:
        title = f"{section}.{sub_prefix.rstrip('.')}"
        out.append(f"### `{title}` ({inner.__name__})\n\n{_cell(_doc(inner))}\n")
        out.extend(_tables(inner, section, sub_prefix))
    return out


def _doc(model: type) -> str:
    """The model's docstring as one paragraph."""
    return " ".join((inspect.getdoc(model) or "").split())


def _nested_model(annotation: Any) -> tuple[type[Section] | None, bool]:
    """The Section model a field holds, directly or as a dict's values (then True), else (None, False)."""
    if inspect.isclass(annotation) and issubclass(annotation, Section):
        return annotation, False
    if get_origin(annotation) is dict:
        value = get_args(annotation)[1]
        if inspect.isclass(value) and issubclass(value, Section):
            return value, True
    return None, False


def _type(annotation: Any) -> str:
    """A field's type as params.yaml sees it: `int`, `float | null`, `"a" | "b"`, `dict[str, SourceSpec]`."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is Annotated:
        return _type(args[0])
    if origin is Literal:
        return " | ".join(json.dumps(arg) for arg in args)
    if origin in (Union, types.UnionType):
        return " | ".join(_type(arg) for arg in args)
    if origin in (list, tuple, dict):
        return f"{origin.__name__}[{', '.join(_type(arg) for arg in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _default(info: FieldInfo, nested: type[Section] | None) -> str:
    if info.default is PydanticUndefined and info.default_factory is None:
        return "required"
    if nested is not None and info.default_factory is nested:
        return "see below"
    value = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
    return "`" + json.dumps(to_jsonable_python(value), ensure_ascii=False).replace("|", "\\|") + "`"


BOUNDS = (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<"))
LENGTHS = (("minLength", "length ≥"), ("maxLength", "length ≤"), ("minItems", "items ≥"), ("maxItems", "items ≤"),
           ("minProperties", "keys ≥"), ("maxProperties", "keys ≤"))


def _constraints(prop: dict[str, Any]) -> str:
    """The ranges, lengths and patterns of one property of the JSON schema (those of a nullable type included)."""
    found: list[str] = []
    for part in [prop, *prop.get("anyOf", [])]:
        found += [f"{symbol} {part[key]}" for key, symbol in BOUNDS if key in part]
        found += [f"{words} {part[key]}" for key, words in LENGTHS if key in part]
        if "pattern" in part:
            found.append(f"matches `{part['pattern']}`")
        if "pattern" in part.get("propertyNames", {}):
            found.append(f"keys match `{part['propertyNames']['pattern']}`")
        found += [f"keys match `{pattern}`" for pattern in part.get("patternProperties", {})]
    return ", ".join(found)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped, and `<` outside code spans escaped
    (`data/raw/<role>` would otherwise be read as an HTML tag and vanish)."""
    text = " ".join(text.split("\n")).replace("|", "\\|")
    return "`".join(part if i % 2 else part.replace("<", "&lt;") for i, part in enumerate(text.split("`")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scratchlm.params_doc", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="write the reference to PATH")
    action.add_argument("--check", action="store_true", help="exit 1 when PATH is not what --write would write")
    parser.add_argument("--path", type=Path, default=DOC_PATH, help=f"default: {DOC_PATH}")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        args.path.parent.mkdir(parents=True, exist_ok=True)
        args.path.write_text(text, encoding="utf-8")
        print(f"wrote {args.path}")
    elif args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.exists() else None
        if current != text:
            print(f"{args.path} is stale: run `{COMMAND}`", file=sys.stderr)
            return 1
        print(f"{args.path} is up to date")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
