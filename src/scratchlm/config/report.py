"""The report section: the model card, its figures, the MLflow Model Registry."""

from __future__ import annotations

from pydantic import (
    Field,
)

from scratchlm.config.base import Section

# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


class ReportParams(Section):
    """The `report` stage: the model card, its figures, and the MLflow Model Registry."""

    register_models: bool = Field(default=True, description="register pretrain/classifier/instruct/aligned in MLflow")
    registry_prefix: str = Field(default="scratchlm", min_length=1, description="registered names: <prefix>-<model>")
    sample_generations: int = Field(default=5, ge=0, description="generations shown in the model card per model "
                                                                 "(pretrain samples, instruct and aligned answers); 0: "
                                                                 "none")
