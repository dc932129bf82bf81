"""What every params section shares: the base model, the error type, the execution marker."""

from __future__ import annotations

import math
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
)


class ConfigError(ValueError):
    """A params section failed validation; the message is one line naming the key."""


#: Marks a field that changes how a stage runs, never what it writes (worker counts, network retries):
#: left out of the manifest, so the same data built with 1 or 8 workers has the same DVC hash.
EXECUTION = {"execution": True}


class Section(BaseModel):
    """Base for every params section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    def output_params(self) -> dict[str, Any]:
        """The params that determine the stage's output (JSON-ready): every field but the EXECUTION ones."""
        out = {}
        for name, info in type(self).model_fields.items():
            if (info.json_schema_extra or {}) == EXECUTION:
                continue
            value = getattr(self, name)
            out[name] = value.output_params() if isinstance(value, Section) else self._json(name)
        return out

    def _json(self, name: str) -> Any:
        return self.model_dump(mode="json", include={name})[name]



def non_finite_key(value: Any, where: str) -> str | None:
    """The dotted key of the first NaN or infinite float anywhere in `value`, else None.

    Checked before the models see the values: a NaN compares false with every bound, so a range check
    alone lets it through (a NaN split ratio "sums to 1").
    """
    if isinstance(value, float) and not math.isfinite(value):
        return where
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        if found := non_finite_key(inner, f"{where}.{key}"):
            return found
    return None
