"""`evaluation/` owns its metrics and sampling: no file of it imports `scratchlm.training`, at module level or
inside a function (a lazy import ties evaluation to the training code just the same)."""

from __future__ import annotations

import ast
from pathlib import Path

import scratchlm.evaluation

EVALUATION = Path(scratchlm.evaluation.__file__).parent
FORBIDDEN = "scratchlm.training"


def imported(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """The modules (and, for `from m import n`, the `m.n` names) an import statement reaches; relative
    imports are resolved against `package`, the importing file's package."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
    module = ".".join(p for p in (base, node.module or "") if p)
    return [module, *(f"{module}.{alias.name}" for alias in node.names)]


def training_imports(path: Path, package: str) -> list[str]:
    """`file:line: name` for each import of `scratchlm.training` (or a module under it) anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [f"{path}:{node.lineno}: imports {name}"
            for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
            for name in imported(node, package)
            if name == FORBIDDEN or name.startswith(FORBIDDEN + ".")]


def package_of(path: Path) -> str:
    return ".".join(["scratchlm", *path.relative_to(EVALUATION.parent).parent.parts])


def test_evaluation_never_imports_training() -> None:
    files = sorted(EVALUATION.rglob("*.py"))
    assert files, f"no Python file under {EVALUATION}"
    found = [hit for path in files for hit in training_imports(path, package_of(path))]
    assert not found, "evaluation/ must not import training/:\n" + "\n".join(found)


def test_the_check_finds_module_level_lazy_and_relative_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import os\nimport scratchlm.training.module\n\n\ndef f():\n"
                     "    from scratchlm.training.finetune import prepare\n    from .. import training\n"
                     "    from ..training import instruct\n    from . import metrics\n", encoding="utf-8")
    lines = {hit.split(":")[1] for hit in training_imports(probe, "scratchlm.evaluation")}
    assert lines == {"2", "6", "7", "8"}
