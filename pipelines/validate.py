"""validate: Great Expectations suites over every data set (see scratchlm.data.validation)."""

import argparse
from pathlib import Path

from scratchlm.data.roles import ROLE_FRAMES, source_roles
from scratchlm.lineage.stage import run_stage


def required_frames(roles: dict[str, str]) -> tuple[str, ...]:
    """Every corpus, and a frame for each role that was downloaded: a missing one fails the stage."""
    return tuple(sorted({"raw_documents", "clean_documents", "dedup_documents",
                         *(ROLE_FRAMES[r] for r in roles.values())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("raw", "clean", "dedup"):
        parser.add_argument(name, help=f"the {name} stage's output folder")
    parser.add_argument("suites", help="folder of Great Expectations suites (JSON)")
    parser.add_argument("output", help="folder for results.json and the Data Docs site")
    args = parser.parse_args()
    summaries = []

    def work(params, out, stage):
        from scratchlm.data.validation import load_validation_frames, validate_frames  # GX: bad params fail first

        roles = source_roles(Path(args.raw))
        if params.allowed_sources is None:  # the corpus may hold what download wrote as pretraining text
            pretrain = sorted(name for name, role in roles.items() if role == "pretrain")
            params = params.model_copy(update={"allowed_sources": pretrain})
        frames = load_validation_frames(Path(args.raw), Path(args.clean), Path(args.dedup), params.label_shares)
        summaries.append(validate_frames(frames, Path(args.suites), out, params, required=required_frames(roles)))
        stage.run.log_artifact(out / "results.json", artifact_path="validation")
        stage.run.log_artifact(out / "data_docs", artifact_path="validation/data_docs")
        return {key: int(value) if isinstance(value, bool) else value
                for key, value in summaries[0].items() if not isinstance(value, list)}

    run_stage("validate", [args.raw, args.clean, args.dedup, args.suites], args.output, work,
              check=lambda: critical(summaries[0]))


def critical(summary: dict) -> None:
    from scratchlm.data.validation import raise_on_critical

    raise_on_critical(summary)


if __name__ == "__main__":
    main()
