"""The audit as a tree on the terminal, as `reports/audit.md` and as `reports/audit.json`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from scratchlm.audit.model import FAIL, INFO, MARKS, OK, WARN, AuditReport, Check, Node
from scratchlm.io import atomic_write_json, atomic_write_text


def _depth(path: str, report: AuditReport, memo: dict[str, int]) -> int:
    """Longest upstream chain below a node: the deepest branch is drawn first, in full."""
    if path not in memo:
        memo[path] = 0
        memo[path] = 1 + max((_depth(up, report, memo) for up in report.nodes[path].upstream), default=-1)
    return memo[path]


def node_line(node: Node) -> str:
    """`✓ pretrain  models/pretrain  run 1a2b3c4d  @9f8e7d6  ✓outputs ✓inputs ...`"""
    mark = MARKS[FAIL] if node.failed else MARKS[OK]
    checks = " ".join(f"{MARKS[c.status]}{c.name}" for c in node.checks)
    return f"{mark} {node.stage}  {node.path}  run {(node.run_id or '-')[:8]}  @{(node.commit or '-')[:7]}  {checks}"


def render_tree(report: AuditReport) -> str:
    """The lineage from the target down to the downloads; a stage reached twice is drawn once."""
    lines: list[str] = []
    memo: dict[str, int] = {}
    seen: set[str] = set()

    def walk(path: str, prefix: str, branch: str, last: bool) -> None:
        node = report.nodes[path]
        if path in seen:
            lines.append(f"{prefix}{branch}{node.stage}  {node.path}  (see above)")
            return
        seen.add(path)
        lines.append(f"{prefix}{branch}{node_line(node)}")
        inner = prefix + ("    " if last else "│   ") if branch else prefix
        ups = sorted(node.upstream, key=lambda up: (-_depth(up, report, memo), up))
        detail = inner + ("│     " if ups else "      ")
        for check in node.checks:
            if check.status in (FAIL, WARN, INFO):
                lines.extend(f"{detail}{MARKS[check.status]} {check.name}: {p}" for p in check.problems)
        for i, up in enumerate(ups):
            walk(up, inner, "└── " if i == len(ups) - 1 else "├── ", i == len(ups) - 1)

    walk(report.root, "", "", True)
    verdict = "FAILED" if report.failed else "verified"
    return "\n".join([*lines, "", *unchecked_lines(report),
                      f"audit {verdict}: {len(report.nodes)} stages, {report.seconds:.1f}s"]) + "\n"


def unchecked_lines(report: AuditReport) -> list[str]:
    """The runs the audit could not check, by stage: information, or the failure of a `--strict` audit."""
    if not report.unchecked:
        return []
    mark = MARKS[FAIL] if report.strict else MARKS[INFO]
    runs = ", ".join(f"{node.stage} ({(node.run_id or '-')[:8]})" for node in report.unchecked)
    why = "--strict fails on them" if report.strict else "everything else about them verified; --strict fails on them"
    return [f"{mark} {len(report.unchecked)} MLflow run(s) not checked, in stores this audit cannot reach ({why}): "
            f"{runs}"]


def to_markdown(report: AuditReport) -> str:
    """reports/audit.md: a per-stage table, every problem, then the tree."""
    verdict = "**FAILED**" if report.failed else "verified"
    lines = [f"# Audit of `{report.target}`", "", f"Result: {verdict} ({len(report.nodes)} stages, "
             f"{report.seconds:.1f}s). ✓ ok, ✗ failed, ! warning, - not checked, i information.", "",
             "| stage | output | MLflow run | commit | " + " | ".join(c.name for c in _checks(report)) + " |",
             "|---|---|---|---|" + "---|" * len(_checks(report))]
    memo: dict[str, int] = {}
    for path in sorted(report.nodes, key=lambda p: (-_depth(p, report, memo), p)):  # target first, downloads last
        node = report.nodes[path]
        marks = " | ".join(MARKS[c.status] for c in node.checks)
        lines.append(f"| {node.stage} | `{node.path}` | `{node.run_id or '-'}` | `{(node.commit or '-')[:7]}` "
                     f"| {marks} |")
    problems = [f"- {MARKS[c.status]} **{n.stage}** {c.name}: {p}" for n in report.nodes.values()
                for c in n.checks if c.status != OK for p in c.problems]
    lines += ["", "## Findings", "", *(problems or ["None."]), *unchecked_lines(report), "", "## Lineage", "", "```",
              render_tree(report).rstrip("\n"), "```", ""]
    return "\n".join(lines)


def _checks(report: AuditReport) -> list[Check]:
    return next(iter(report.nodes.values())).checks if report.nodes else []


def to_json(report: AuditReport) -> dict[str, Any]:
    """reports/audit.json: the whole report, with a top-level verdict for scripts."""
    return {"target": report.target, "root": report.root, "failed": report.failed, "seconds": report.seconds,
            "strict": report.strict, "unchecked": {node.stage: node.run_id for node in report.unchecked},
            "nodes": {path: {**asdict(node), "failed": node.failed} for path, node in report.nodes.items()}}


def write_reports(report: AuditReport, json_out: Path, md_out: Path) -> None:
    """Both report files, each replaced atomically."""
    atomic_write_json(json_out, to_json(report))
    atomic_write_text(md_out, to_markdown(report))
