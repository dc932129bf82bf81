"""What an audit finds: a check per verification, a node per stage output, the report over the lineage."""

from __future__ import annotations

from dataclasses import dataclass, field

OK, FAIL, WARN, SKIP, INFO = "ok", "fail", "warn", "skip", "info"
MARKS = {OK: "✓", FAIL: "✗", WARN: "!", SKIP: "-", INFO: "i"}


class AuditError(ValueError):
    """The target cannot be audited at all (not a stage output, an unknown run id); one line."""


@dataclass
class Check:
    """One verification of one stage: its status and, unless it passed, the lines that say why."""

    name: str
    status: str
    problems: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, name: str, failures: list[str], warnings: list[str] | None = None) -> Check:
        """FAIL with the failures (warnings after them), else WARN with the warnings, else OK."""
        warnings = warnings or []
        return cls(name, FAIL if failures else WARN if warnings else OK, failures + warnings)


@dataclass
class Node:
    """One stage execution, identified by its output folder; `upstream` holds the folders it read."""

    stage: str
    path: str
    run_id: str | None
    commit: str | None
    checks: list[Check]
    upstream: list[str]

    @property
    def failed(self) -> bool:
        return any(check.status == FAIL for check in self.checks)


@dataclass
class AuditReport:
    """The lineage as a DAG: every node once in `nodes` (keyed by output path), `root` is the target's."""

    target: str
    root: str
    nodes: dict[str, Node]
    seconds: float = 0.0
    strict: bool = False
    """A release check: a run the audit could not check (its store out of reach) fails it too."""

    @property
    def unchecked(self) -> list[Node]:
        """The stages whose MLflow run is in a store out of this audit's reach: listed, never passed silently."""
        return [node for node in self.nodes.values()
                if any(check.name == "mlflow" and check.status == INFO for check in node.checks)]

    @property
    def failed(self) -> bool:
        return any(node.failed for node in self.nodes.values()) or (self.strict and bool(self.unchecked))
