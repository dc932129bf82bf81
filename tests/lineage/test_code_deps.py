"""dvc.yaml's `.py` deps are what each stage imports (scratchlm.lineage.code_deps), and the check catches a new one."""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path

import pytest
import yaml

from scratchlm.lineage.code_deps import Drift, ImportGraph, check, code_deps, drift, main, read_stages, rewrite

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def _repo_graph() -> ImportGraph:
    """One parse of the repository's files for every stage's test."""
    return ImportGraph(REPO)


@pytest.mark.parametrize("stage", read_stages(REPO), ids=lambda stage: stage.stage)
def test_stage_code_deps_match_imports(stage):
    found = drift(stage, _repo_graph())
    assert not found, f"{found.describe()}\n(run `python -m scratchlm.lineage.code_deps --write` to fix dvc.yaml)"


def _tree(root: Path, files: dict[str, str]) -> Path:
    """A fake repository: each file's text, dedented."""
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


DVC_YAML = """\
stages:
  a:
    cmd: python -m pipelines.a in out
    deps:
      - pipelines/a.py
      - pipelines/_wiring.py
      - src/scratchlm/lib.py
      - data/in
    outs:
      - out
  b:
    cmd: python -m pipelines.b in out
    deps:
      - pipelines/b.py
      - pipelines/_wiring.py
      - data/in
"""

FAKE = {
    "dvc.yaml": DVC_YAML,
    "pipelines/__init__.py": '"""Stage scripts (a docstring only: not a dep)."""\n',
    "pipelines/_wiring.py": "import os\n",
    "pipelines/a.py": "from pipelines._wiring import os\nfrom scratchlm import lib\n",
    "pipelines/b.py": "from pipelines._wiring import os\n",
    "src/scratchlm/__init__.py": "",
    "src/scratchlm/lib.py": "import json\n",
    "src/scratchlm/new.py": "X = 1\n",
}


def test_fake_tree_is_in_sync(tmp_path):
    assert check(_tree(tmp_path, FAKE)) == []


def test_check_reports_the_stage_and_file_of_an_unlisted_import(tmp_path):
    root = _tree(tmp_path, {**FAKE, "src/scratchlm/lib.py": "import json\nfrom scratchlm.new import X\n"})

    assert check(root) == [Drift("a", {"src/scratchlm/new.py": (
        "pipelines/a.py", "src/scratchlm/lib.py", "src/scratchlm/new.py")}, ())]
    assert main(["--check", "--root", str(root)]) == 1


def test_check_reports_a_listed_file_no_longer_imported(tmp_path):
    root = _tree(tmp_path, {**FAKE, "pipelines/a.py": "from pipelines._wiring import os\n"})

    assert check(root) == [Drift("a", {}, ("src/scratchlm/lib.py",))]


def test_lazy_import_inside_a_function_is_found_and_type_checking_is_not(tmp_path):
    root = _tree(tmp_path, {**FAKE, "pipelines/b.py": """\
        from typing import TYPE_CHECKING

        from pipelines._wiring import os

        if TYPE_CHECKING:
            from scratchlm import lib


        def work():
            from scratchlm.new import X  # heavy: imported only when the stage runs
            return X
        """})

    deps = code_deps("pipelines.b", root)

    assert deps["src/scratchlm/new.py"] == ("pipelines/b.py", "src/scratchlm/new.py")
    assert "src/scratchlm/lib.py" not in deps


def test_imports_resolve_to_submodules_packages_and_relative_names(tmp_path):
    root = _tree(tmp_path, {
        "pipelines/__init__.py": "",
        "pipelines/x.py": "from scratchlm.data import tasks as t, helper\nfrom scratchlm.model import GPT\n",
        "src/scratchlm/__init__.py": '"""docstring only"""\n',
        "src/scratchlm/data/__init__.py": "helper = 1\n",
        "src/scratchlm/data/tasks.py": "from . import sibling\nfrom ..io import read\n",
        "src/scratchlm/data/sibling.py": "",
        "src/scratchlm/io.py": "def read(): ...\n",
        "src/scratchlm/model/__init__.py": "",
        "src/scratchlm/model/gpt.py": "",
    })

    assert sorted(code_deps("pipelines.x", root)) == [
        "pipelines/x.py",
        "src/scratchlm/data/__init__.py",  # holds code: every import of scratchlm.data runs it
        "src/scratchlm/data/sibling.py",
        "src/scratchlm/data/tasks.py",
        "src/scratchlm/io.py",
    ]  # model/__init__.py is empty (GPT is not there: an ImportError at run time, but nothing to digest)


def test_write_changes_only_the_py_lines_of_each_stage(tmp_path):
    text = DVC_YAML.replace("      - data/in\n    outs:", "      # a comment that stays\n      - data/in\n    outs:")
    root = _tree(tmp_path, {**FAKE, "dvc.yaml": text,
                            "pipelines/b.py": "from pipelines._wiring import os\nimport scratchlm.new\n"})

    assert main(["--write", "--root", str(root)]) == 0

    new = (root / "dvc.yaml").read_text(encoding="utf-8")
    assert new == text.replace("      - pipelines/_wiring.py\n      - data/in\n",
                               "      - pipelines/_wiring.py\n      - src/scratchlm/new.py\n      - data/in\n")
    assert check(root) == []
    assert rewrite(new, {"b": ["pipelines/b.py", "pipelines/_wiring.py", "src/scratchlm/new.py"]}) == new


def test_rewrite_keeps_non_code_deps_in_place_and_orders_code_deps():
    text = "stages:\n  s:\n    cmd: python -m pipelines.s\n    deps:\n      - data/x\n      - pipelines/s.py\n"

    new = rewrite(text, {"s": ["pipelines/s.py", "src/scratchlm/a.py"]})

    assert yaml.safe_load(new)["stages"]["s"]["deps"] == ["data/x", "pipelines/s.py", "src/scratchlm/a.py"]


def test_a_stage_depends_on_its_own_config_area_through_the_registry():
    """A default edited in config/data.py re-runs the data stages, not pretrain; one in config/training.py
    re-runs pretrain, not clean (dvc status sees the changed dep)."""
    listed = {stage.stage: set(stage.listed) for stage in read_stages(REPO)}

    assert "src/scratchlm/config/data.py" in listed["clean"]
    assert "src/scratchlm/config/training.py" not in listed["clean"]
    assert "src/scratchlm/config/training.py" in listed["pretrain"]
    assert "src/scratchlm/config/data.py" not in listed["pretrain"]
    assert "src/scratchlm/config/evaluation.py" in listed["evaluate"]


def test_the_registry_section_module_is_followed_in_a_fake_tree(tmp_path):
    registry = 'STAGES = (Stage("a", "scratchlm.conf:AParams"),)\n'
    root = _tree(tmp_path, {**FAKE, "src/scratchlm/stages.py": registry, "src/scratchlm/conf.py": "import json\n"})

    assert check(root) == [Drift("a", {"src/scratchlm/conf.py": ("src/scratchlm/stages.py", "src/scratchlm/conf.py")},
                                 ())]
