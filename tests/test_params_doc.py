"""Every params key is described at its field, and docs/params.md is the reference generated from them."""

import inspect
import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from scratchlm import params_doc
from scratchlm.config import loader
from scratchlm.config.base import Section
from scratchlm.stages import all_sections

SECTIONS = all_sections()
CONFIG_MODULES = sorted({inspect.getmodule(model) for model in SECTIONS.values()}, key=lambda module: module.__name__)
MODELS = sorted((model for module in CONFIG_MODULES for model in vars(module).values()
                 if inspect.isclass(model) and issubclass(model, BaseModel) and model.__module__ == module.__name__),
                key=lambda model: model.__name__)


def test_every_field_is_described() -> None:
    missing = [f"{model.__name__}.{name}" for model in MODELS for name, info in model.model_fields.items()
               if not (info.description or "").strip()]
    assert not missing, f"fields without a description= in scratchlm/config/: {', '.join(missing)}"


def test_the_reference_is_up_to_date() -> None:
    path = params_doc.DOC_PATH
    assert path.exists() and path.read_text(encoding="utf-8") == params_doc.render(), (
        f"{path} is stale: run `python -m scratchlm.params_doc --write`")


def test_the_reference_names_every_section_and_key() -> None:
    text = params_doc.render()
    assert text == params_doc.render()  # deterministic
    for section, model in SECTIONS.items():
        assert f"## `{section}`" in text
        for name in model.model_fields:
            assert f"`{name}`" in text or f".{name}`" in text, f"{section}.{name} is not in the reference"


def test_check_fails_on_a_stale_file(tmp_path, capsys) -> None:
    stale = tmp_path / "params.md"
    stale.write_text("old\n", encoding="utf-8")
    assert params_doc.main(["--check", "--path", str(stale)]) == 1
    assert str(stale) in capsys.readouterr().err
    assert params_doc.main(["--write", "--path", str(stale)]) == 0
    assert params_doc.main(["--check", "--path", str(stale)]) == 0


@pytest.mark.parametrize("section", sorted(name for name, model in SECTIONS.items()
                                           if all(not info.is_required() for info in model.model_fields.values())))
def test_defaults_validate_and_round_trip(section: str) -> None:
    """The descriptions changed no behaviour: each section's defaults validate, and its output params are
    JSON that validates back to the same output params."""
    out = loader.parse_section(section, {}).output_params()
    assert json.loads(json.dumps(out)) == out
    assert SECTIONS[section].model_validate(out).output_params() == out


def test_params_yaml_round_trips(repo_root: Path) -> None:
    """The same for every section of params.yaml (download and scaling have required keys: no defaults)."""
    for section, values in loader.read_params_file(repo_root / "params.yaml").items():
        params = loader.parse_section(section, values)
        out = params.output_params()
        assert SECTIONS[section].model_validate(params.model_dump(mode="json")).output_params() == out
        assert isinstance(params, Section)
