"""choice.json as pretrain reads it: a fixed size's constant bytes, and bad files named in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scratchlm.io import DataFormatError
from scratchlm.scaling.chosen import decision, read_choice


def test_a_fixed_pretrains_choice_is_the_same_whatever_the_ladder_and_is_refused(tmp_path: Path) -> None:
    fixed = tmp_path / "choice.json"
    fixed.write_text(json.dumps(decision({"choice": {"chosen": {"n_layer": 9}}}, from_ladder=False)))
    assert json.loads(fixed.read_text()) == decision({}, from_ladder=False)
    with pytest.raises(DataFormatError, match=r"choice.json: no size chosen \(pretrain.model.size is fixed"):
        read_choice(fixed)
    with pytest.raises(DataFormatError, match="missing"):
        read_choice(tmp_path / "absent.json")


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not valid JSON"),
    ("[1, 2]", "no size chosen (not an object"),
    ('{"chosen": {"n_layer": 2, "n_head": 2}}', "no size chosen"),
    ('{"chosen": {"n_layer": 2, "n_head": 2, "n_embd": "64", "max_steps": 10}}', "chosen.n_embd is '64'"),
    ('{"chosen": {"n_layer": 2, "n_head": 2, "n_embd": 64, "max_steps": 0}}', "chosen.max_steps is 0"),
    ('{"chosen": {"n_layer": true, "n_head": 2, "n_embd": 64, "max_steps": 5}}', "chosen.n_layer is True"),
])
def test_a_bad_choice_file_is_one_line_naming_it(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "choice.json"
    path.write_text(text)
    with pytest.raises(DataFormatError) as error:
        read_choice(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)
    assert "\n" not in str(error.value)
