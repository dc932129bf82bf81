"""The stage registry is dvc.yaml's stage list, and every list derived from it names real stages and sections."""

from pathlib import Path

from scratchlm.audit.walk import load_stages
from scratchlm.config.base import Section
from scratchlm.stages import BY_NAME, METRIC_STAGES, REGISTERED, STAGES, TRAINING, all_sections

REPO = Path(__file__).resolve().parents[1]


def test_registry_lists_dvc_yaml_stages_in_order():
    families = list(dict.fromkeys(stage.partition("@")[0] for stage in load_stages(REPO)))

    assert [stage.name for stage in STAGES] == families


def test_every_section_resolves_to_a_model():
    sections = all_sections()

    assert set(BY_NAME) <= set(sections)
    assert all(issubclass(model, Section) for model in sections.values())


def test_derived_lists():
    assert "report" not in METRIC_STAGES and "scaling" not in METRIC_STAGES and "evaluate" in METRIC_STAGES
    assert set(TRAINING) == {"scaling", "pretrain", "finetune_classifier", "finetune_instruct", "align"}
    assert set(REGISTERED) == {"pretrain", "finetune_classifier", "finetune_instruct", "align"}
