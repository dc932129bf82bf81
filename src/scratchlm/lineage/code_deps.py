"""Each DVC stage's code deps, computed from its imports instead of listed by hand.

A stage's `.py` deps in dvc.yaml do two jobs: DVC re-runs the stage when one of them changes, and the
stage's manifest digests exactly those files (`scratchlm.lineage.stage.stage_code`), which is what `scratchlm
audit` compares. A file the stage imports but does not list (a params default in `config/`, a model
module the report loads) changes the stage's output without re-running it or showing up in the audit.
So the list is derived: the repository `.py` files the stage's module can import, transitively.

What counts as an import:

- every `import a.b` and `from a import b` (relative ones too), at module level and inside functions:
  a stage imports its heavy library inside its work function, and that library is what it runs;
- only modules of this repository (`PACKAGES`: `scratchlm` under `src/`, `pipelines`) are followed;
- `from pkg import name` is the submodule `pkg/name.py` when there is one, else `pkg/__init__.py`;
- importing `a.b.c` runs `a/__init__.py` and `a/b/__init__.py` too, so a package's `__init__.py` is a
  dep, but only when it holds a statement besides its docstring: an empty or docstring-only one changes
  nothing a stage computes, and listing it would make every stage re-run when its docstring is edited;
- `if TYPE_CHECKING:` blocks are skipped: they never run.

- the stage registry (`src/scratchlm/stages.py`) names each stage's params model by string, imported when
  the stage loads its params: that module is followed as if the stage's script imported it, so a changed
  default re-runs the stages that read it (and only those of its area).

Not seen: other imports by string (`importlib.import_module(name)`), and code the stage runs as a subprocess.

`python -m scratchlm.lineage.code_deps --check` reports the stages whose dvc.yaml list differs;
`python -m scratchlm.lineage.code_deps --write` rewrites the `.py` lines of each stage's `deps:` in place (the
other deps, their order and the file's comments are kept).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: Top-level packages of this repository and their folders, relative to the repository root. The order
#: is the order of the listed deps: the stage scripts' wiring (`pipelines/`) before the library.
PACKAGES: Mapping[str, str] = {"pipelines": "pipelines", "scratchlm": "src/scratchlm"}
DVC_FILE = "dvc.yaml"

#: How a file was reached: the stage's script first, the file last.
Chain = tuple[str, ...]
#: One import statement's target: the module to load, and the one to load instead when that is not a
#: module of ours (`from pkg import name`: `pkg.name`, else `pkg`).
Target = tuple[str, str | None]

_STAGE_MODULE = re.compile(r"\bpython3?\s+-m\s+([A-Za-z_][\w.]*)")


# ------------------------------------------------------------------------------------------ the imports


@dataclass(frozen=True)
class ModuleFile:
    """A module of the repository: its dotted name and its file (relative to the root, posix)."""

    name: str
    path: str
    is_package: bool


def _is_type_checking(test: ast.expr) -> bool:
    """`TYPE_CHECKING` or `typing.TYPE_CHECKING`: a block that never runs."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _ImportCollector(ast.NodeVisitor):
    """Every import statement of a module, wherever it is (function bodies included), as `Target`s."""

    def __init__(self, module: ModuleFile) -> None:
        self.module = module
        self.targets: list[Target] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for statement in node.orelse:
                self.visit(statement)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.targets += [(alias.name, None) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._absolute(node)
        if base is None:
            return
        for alias in node.names:
            self.targets.append((base, None) if alias.name == "*" else (f"{base}.{alias.name}", base))

    def _absolute(self, node: ast.ImportFrom) -> str | None:
        """The module a `from … import` names, relative ones resolved against this module's package."""
        if not node.level:
            return node.module
        package = self.module.name.split(".") if self.module.is_package else self.module.name.split(".")[:-1]
        if node.level - 1 > len(package) - 1:
            return None  # beyond the top-level package: an ImportError at run time, nothing to follow
        parts = package[: len(package) - (node.level - 1)]
        return ".".join([*parts, *([node.module] if node.module else [])])


def _is_trivial(tree: ast.Module) -> bool:
    """True for a module that does nothing when imported: no statement besides its docstring."""
    return not [statement for statement in tree.body if not _is_docstring(statement)]


def _is_docstring(statement: ast.stmt) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str))


@dataclass
class ImportGraph:
    """The repository's modules and what each imports; each file is parsed once, however many stages
    reach it."""

    root: Path
    packages: Mapping[str, str] = field(default_factory=lambda: dict(PACKAGES))
    _parsed: dict[str, tuple[list[Target], bool]] = field(default_factory=dict, repr=False)

    def find(self, name: str) -> ModuleFile | None:
        """The file of a module of ours (`scratchlm.data.dedup` → `src/scratchlm/data/dedup.py`), if any."""
        top, *rest = name.split(".")
        if top not in self.packages or not all(part.isidentifier() for part in rest):
            return None
        folder = Path(self.packages[top], *rest)
        for path, is_package in ((folder.with_name(f"{folder.name}.py"), False), (folder / "__init__.py", True)):
            if (rest or is_package) and (self.root / path).is_file():  # `scratchlm.py` is not our top package
                return ModuleFile(name, path.as_posix(), is_package)
        return None

    def loads(self, name: str) -> list[ModuleFile]:
        """What importing `name` runs: each enclosing package's `__init__.py`, outermost first, then it."""
        parts = name.split(".")
        found = [self.find(".".join(parts[:i])) for i in range(1, len(parts) + 1)]
        return [module for module in found if module is not None]

    def imports(self, module: ModuleFile) -> list[Target]:
        return self._parse(module)[0]

    def is_trivial(self, module: ModuleFile) -> bool:
        return self._parse(module)[1]

    def _parse(self, module: ModuleFile) -> tuple[list[Target], bool]:
        if module.path not in self._parsed:
            source = (self.root / module.path).read_text(encoding="utf-8")
            tree = ast.parse(source, filename=module.path)
            collector = _ImportCollector(module)
            collector.visit(tree)
            self._parsed[module.path] = (collector.targets, _is_trivial(tree))
        return self._parsed[module.path]

    def resolve(self, target: Target) -> str | None:
        """The module an import statement's target loads, if it is one of ours."""
        name, fallback = target
        if self.find(name) is not None:
            return name
        return fallback if fallback is not None and self.find(fallback) is not None else None


REGISTRY = "src/scratchlm/stages.py"


def registry_sections(root: Path) -> dict[str, str]:
    """Each stage of `root`'s registry (REGISTRY) -> the module of its params model, read from the file's
    `Stage("name", "module:Class", ...)` calls (the registry of the tree being checked, not of this code)."""
    path = root / REGISTRY
    if not path.exists():
        return {}
    found = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Stage"
                and len(node.args) >= 2 and all(isinstance(arg, ast.Constant) for arg in node.args[:2])):
            found[str(node.args[0].value)] = str(node.args[1].value).partition(":")[0]
    return found


def code_deps(module: str, root: Path, packages: Mapping[str, str] = PACKAGES,
              graph: ImportGraph | None = None, section: str | None = None) -> dict[str, Chain]:
    """The repository `.py` files that importing `module` (a stage's `pipelines.<stage>`) can run, each
    with the chain of files that brought it in, found breadth first (so the chain is a shortest one).

    Trivial `__init__.py` files (see the module docstring) are left out. Pass `graph` to share parsed
    files between stages, and `section`, the module of the stage's params model in the registry, to
    follow it too.
    """
    graph = graph or ImportGraph(root, packages)
    if graph.find(module) is None:
        raise ValueError(f"{module}: no such module under {root} ({', '.join(graph.packages.values())})")
    chains: dict[str, Chain] = {}
    reached: list[ModuleFile] = []
    queue: deque[ModuleFile] = deque()

    def reach(name: str, via: Chain) -> None:
        for loaded in graph.loads(name):
            if loaded.path not in chains:
                chains[loaded.path] = (*via, loaded.path)
                reached.append(loaded)
                queue.append(loaded)

    reach(module, ())
    if section is not None and graph.find(section) is not None:
        reach(section, (REGISTRY,))
    while queue:
        current = queue.popleft()
        for target in graph.imports(current):
            name = graph.resolve(target)
            if name is not None:
                reach(name, chains[current.path])
    return {loaded.path: chains[loaded.path] for loaded in reached
            if not (loaded.is_package and graph.is_trivial(loaded))}


def ordered(files: Sequence[str] | set[str], script: str, packages: Mapping[str, str] = PACKAGES) -> list[str]:
    """The order dvc.yaml lists code deps in: the stage's script, then by package (`pipelines/` before
    `src/scratchlm/`), then by path."""
    folders = list(packages.values())

    def key(path: str) -> tuple[bool, int, str]:
        rank = next((i for i, folder in enumerate(folders) if path.startswith(f"{folder}/")), len(folders))
        return path != script, rank, path

    return sorted(files, key=key)


# -------------------------------------------------------------------------- dvc.yaml against the imports


@dataclass(frozen=True)
class StageCode:
    """One dvc.yaml stage's code: the module its cmd runs, and the `.py` deps it lists."""

    stage: str
    module: str
    listed: tuple[str, ...]


@dataclass(frozen=True)
class Drift:
    """Where a stage's listed `.py` deps differ from what it imports."""

    stage: str
    missing: dict[str, Chain]
    extra: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra)

    def describe(self) -> str:
        lines = [f"stage {self.stage}: dvc.yaml's .py deps differ from what it imports"]
        lines += [f"  missing {path} (imported via {' -> '.join(chain)})" for path, chain in self.missing.items()]
        lines += [f"  extra {path} (listed, never imported)" for path in self.extra]
        return "\n".join(lines)


def _dep_paths(deps: Any) -> list[str]:
    """The paths of a dvc.yaml deps list, whose items are strings or `{path: options}`."""
    return [next(iter(dep)) if isinstance(dep, dict) else str(dep) for dep in deps or []]


def parse_stages(text: str) -> list[StageCode]:
    """Each stage of a dvc.yaml's text that runs a module of ours (`python -m pipelines.<stage>`), with its
    listed `.py` deps; a `foreach` family's are in its `do` (not templated: the same for every member)."""
    document = yaml.safe_load(text) or {}
    stages = []
    for stage, spec in (document.get("stages") or {}).items():
        body = spec.get("do", spec) if isinstance(spec, dict) else {}
        match = _STAGE_MODULE.search(str(body.get("cmd", "")))
        if match:
            listed = tuple(path for path in _dep_paths(body.get("deps")) if path.endswith(".py"))
            stages.append(StageCode(stage, match.group(1), listed))
    return stages


def read_stages(root: Path) -> list[StageCode]:
    return parse_stages((root / DVC_FILE).read_text(encoding="utf-8"))


def script_of(module: str, graph: ImportGraph) -> str:
    found = graph.find(module)
    if found is None:
        raise ValueError(f"{module}: no such module under {graph.root}")
    return found.path


def drift(stage: StageCode, graph: ImportGraph) -> Drift:
    """The stage's missing deps (imported, not listed; with their chains) and extra ones (listed, not
    imported)."""
    computed = code_deps(stage.module, graph.root, graph=graph, section=registry_sections(graph.root).get(stage.stage))
    missing = {path: computed[path] for path in ordered(set(computed) - set(stage.listed), script_of(
        stage.module, graph))}
    return Drift(stage.stage, missing, tuple(sorted(set(stage.listed) - set(computed))))


def check(root: Path, stages: Sequence[StageCode] | None = None) -> list[Drift]:
    """The stages of `root`'s dvc.yaml whose `.py` deps are not what they import (empty: all in sync)."""
    graph = ImportGraph(root)
    drifts = (drift(stage, graph) for stage in (read_stages(root) if stages is None else stages))
    return [found for found in drifts if found]


def expected(root: Path, stages: Sequence[StageCode]) -> dict[str, list[str]]:
    """Each stage's code deps as dvc.yaml should list them, in its order."""
    graph, sections = ImportGraph(root), registry_sections(root)
    return {stage.stage: ordered(set(code_deps(stage.module, root, graph=graph, section=sections.get(stage.stage))),
                                 script_of(stage.module, graph))
            for stage in stages}


# ------------------------------------------------------------------------------ rewriting dvc.yaml in place

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[^\s#:-][^:#]*?)\s*:\s*(#.*)?$")
_ITEM = re.compile(r"^(?P<indent> *)-\s+(?P<quote>['\"]?)(?P<value>[^'\"#]+?)(?P=quote)\s*(#.*)?$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_blank(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


def _stage_spans(lines: list[str]) -> Iterator[tuple[str, int, int]]:
    """(stage, first line, end line) of each stage under the top-level `stages:`."""
    start = next((i for i, line in enumerate(lines) if line.rstrip() == "stages:"), None)
    if start is None:
        return
    end = next((i for i in range(start + 1, len(lines)) if not _is_blank(lines[i]) and _indent(lines[i]) == 0),
               len(lines))
    headers = [(i, m["key"]) for i in range(start + 1, end) if (m := _KEY.match(lines[i]))]
    level = min((_indent(lines[i]) for i, _ in headers), default=0)
    headers = [(i, key) for i, key in headers if _indent(lines[i]) == level]
    for (first, stage), (nxt, _) in zip(headers, [*headers[1:], (end, "")], strict=True):
        yield stage, first, nxt


def _deps_block(lines: list[str], first: int, end: int, stage: str) -> tuple[int, int]:
    """The lines of the stage's `deps:` list: (the `deps:` line, the line after its last item)."""
    headers = [i for i in range(first, end) if (m := _KEY.match(lines[i])) and m["key"] == "deps"]
    if len(headers) != 1:
        raise ValueError(f"{DVC_FILE}: stage {stage} has {len(headers)} `deps:` lists; add one by hand")
    header = headers[0]
    level, stop = _indent(lines[header]), header + 1
    for i in range(header + 1, end):
        if _is_blank(lines[i]):
            continue
        if _indent(lines[i]) > level or (_indent(lines[i]) == level and lines[i].lstrip().startswith("- ")):
            stop = i + 1
        else:
            break
    return header, stop


def _rewrite_block(block: list[str], code: Sequence[str], item_indent: str) -> list[str]:
    """The deps lines with the `.py` items replaced by `code`, put where the first `.py` item was."""
    is_code = [bool((m := _ITEM.match(line.rstrip("\r\n"))) and m["value"].endswith(".py")) for line in block]
    at = is_code.index(True) if True in is_code else 0
    ending = "\r\n" if block and block[0].endswith("\r\n") else "\n"
    kept = [line for line, code_line in zip(block, is_code, strict=True) if not code_line]
    at -= sum(is_code[:at])
    return [*kept[:at], *(f"{item_indent}- {path}{ending}" for path in code), *kept[at:]]


def rewrite(text: str, code: Mapping[str, Sequence[str]]) -> str:
    """dvc.yaml's text with each named stage's `.py` deps replaced by `code[stage]`; every other line
    (the other deps, their order, comments) is kept as it is."""
    lines = text.splitlines(keepends=True)
    for stage, first, end in reversed(list(_stage_spans(lines))):
        if stage not in code:
            continue
        header, stop = _deps_block(lines, first, end, stage)
        items = [m for line in lines[header + 1:stop] if (m := _ITEM.match(line.rstrip("\r\n")))]
        indent = items[0]["indent"] if items else " " * (_indent(lines[header]) + 2)
        lines[header + 1:stop] = _rewrite_block(lines[header + 1:stop], code[stage], indent)
    new = "".join(lines)
    _verify(text, new, code)
    return new


def _without_code(document: Any) -> Any:
    """dvc.yaml's parsed content with every stage's `.py` deps dropped: what a rewrite must not change."""
    for spec in (document.get("stages") or {}).values():
        body = spec.get("do", spec) if isinstance(spec, dict) else {}
        if "deps" in body:
            body["deps"] = [dep for dep in body["deps"] or [] if not (isinstance(dep, str) and dep.endswith(".py"))]
    return document


def _verify(old: str, new: str, code: Mapping[str, Sequence[str]]) -> None:
    """Refuse a rewrite that changed anything besides the `.py` deps, or did not put them in."""
    if _without_code(yaml.safe_load(old)) != _without_code(yaml.safe_load(new)):
        raise RuntimeError(f"{DVC_FILE}: the rewrite would change more than the .py deps; not written")
    for stage in parse_stages(new):
        if stage.stage in code and list(stage.listed) != list(code[stage.stage]):
            raise RuntimeError(f"{DVC_FILE}: stage {stage.stage}'s .py deps could not be rewritten; not written")


def write(root: Path) -> list[Drift]:
    """Rewrite `root`'s dvc.yaml so every stage lists what it imports; the drifts it fixed. The file is
    read once, so a concurrent edit of another part of it is either wholly in or wholly out."""
    path = root / DVC_FILE
    text = path.read_text(encoding="utf-8")
    stages = parse_stages(text)
    fixed = check(root, stages)
    if fixed:
        path.write_text(rewrite(text, expected(root, stages)), encoding="utf-8")
    return fixed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scratchlm.lineage.code_deps", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="report stages whose .py deps differ (the default)")
    action.add_argument("--write", action="store_true", help="rewrite the .py deps of dvc.yaml's stages in place")
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository root (default: the cwd)")
    args = parser.parse_args(argv)
    drifts = write(args.root) if args.write else check(args.root)
    for found in drifts:
        print(found.describe())
    if args.write:
        print(f"{DVC_FILE}: rewrote {len(drifts)} stage(s)" if drifts else f"{DVC_FILE}: already in sync")
        return 0
    return 1 if drifts else 0


if __name__ == "__main__":
    sys.exit(main())
