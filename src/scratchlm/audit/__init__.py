"""`scratchlm audit`: re-verify everything behind an output, hop by hop, down to the raw downloads.

A score is only as trustworthy as the chain of bytes, code, parameters and runs behind it. The
manifests record that chain (deterministically: `scratchlm.lineage.manifest`), each stage's run record and MLflow
run record who made each output; `walk` follows the chain upstream, `checks` verifies every stage on the
way, `render` shows the result, and `reproduce` re-runs one stage from its record.

Pure functions, no MLflow import (runs are read through `scratchlm.lineage.tracking`).
"""

from scratchlm.audit.checks import CHECKS, input_problems
from scratchlm.audit.model import FAIL, INFO, MARKS, OK, SKIP, WARN, AuditError, AuditReport, Check, Node
from scratchlm.audit.render import render_tree, to_json, to_markdown, write_reports
from scratchlm.audit.reproduce import (
    CLOSE,
    DIFF,
    EXPECTED,
    IGNORED,
    SAME,
    ReproduceReport,
    metric_row,
    render_reproduce,
    reproduce_stage,
)
from scratchlm.audit.walk import DEFAULT_TARGET, audit

__all__ = [
    "CHECKS", "CLOSE", "DEFAULT_TARGET", "DIFF", "EXPECTED", "FAIL", "IGNORED", "INFO", "MARKS", "OK", "SAME", "SKIP",
    "WARN", "AuditError", "AuditReport", "Check", "Node", "ReproduceReport", "audit", "input_problems", "metric_row",
    "render_reproduce", "render_tree", "reproduce_stage", "to_json", "to_markdown", "write_reports",
]
