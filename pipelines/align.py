"""align: the instruction model aligned to preference pairs by DPO (see scratchlm.training.align)."""

import argparse
from pathlib import Path

from scratchlm.data.roles import role_files, role_folder, source_roles
from scratchlm.io import atomic_write_json
from scratchlm.lineage.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("preference", help="the download output's preference sources ({prompt, chosen, rejected}; "
                                           "none: pairs are built from the instruction set), e.g. data/raw/preference")
    parser.add_argument("instruction", help="the instruction sources the instruction model was tuned on, "
                                            "e.g. data/raw/instruction")
    parser.add_argument("instruct", help="the instruction model (the reference), e.g. models/instruct")
    parser.add_argument("output", help="folder for the aligned model, e.g. models/aligned")
    parser.add_argument("--decontaminate", metavar="BENCHMARK_DIR",
                        help="benchmark sources the pairs must not share n-grams with, e.g. data/raw/benchmark")
    parser.add_argument("--checkpoints", default="checkpoints/align", help="resume checkpoints (persistent)")
    args = parser.parse_args()

    def work(params, out, stage):
        from scratchlm.training.align import align  # torch + Lightning: bad params fail first

        has_pairs = "preference" in source_roles(Path(args.preference)).values()
        preference = role_files(Path(args.preference), "preference") if has_pairs else []
        benchmarks = role_folder(Path(args.decontaminate), "benchmark") if args.decontaminate else None
        metrics = align(role_files(Path(args.instruction), "instruction"), preference, Path(args.instruct), out,
                        Path(args.checkpoints), params, stage.run.log_metrics_at, benchmark_dir=benchmarks)
        atomic_write_json(out / "epochs.json", metrics.pop("epochs"))
        stage.run.log_artifact(out / "samples.jsonl", artifact_path="samples")
        return metrics

    inputs = [args.preference, args.instruction, args.instruct, *([args.decontaminate] if args.decontaminate else [])]
    run_stage("align", inputs, args.output, work)


if __name__ == "__main__":
    main()
