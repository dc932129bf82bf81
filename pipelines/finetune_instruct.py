"""finetune_instruct: the pretrained GPT as an instruction follower (see scratchlm.training.instruct)."""

import argparse
from pathlib import Path

from scratchlm.data.roles import role_files, role_folder
from scratchlm.lineage.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", help="the instruction sources of the download output (merged in name order), a "
                                     "source's folder or a JSONL file (instruction, input, output), "
                                     "e.g. data/raw/instruction")
    parser.add_argument("pretrained", help="pretrain output, e.g. models/pretrain")
    parser.add_argument("output", help="folder for the instruction model, e.g. models/instruct")
    parser.add_argument("--decontaminate", metavar="BENCHMARK_DIR",
                        help="benchmark sources the set must not share n-grams with, e.g. data/raw/benchmark")
    parser.add_argument("--checkpoints", default="checkpoints/finetune_instruct",
                        help="resume checkpoints (persistent)")
    args = parser.parse_args()

    def work(params, out, stage):
        from scratchlm.training.instruct import finetune_instruct  # torch + Lightning: bad params fail first

        data = role_files(Path(args.data), "instruction")
        benchmarks = role_folder(Path(args.decontaminate), "benchmark") if args.decontaminate else None
        metrics = finetune_instruct(data, Path(args.pretrained), out, Path(args.checkpoints), params,
                                    stage.run.log_metrics_at, benchmark_dir=benchmarks)
        stage.run.log_artifact(out / "samples.jsonl", artifact_path="samples")
        return metrics

    inputs = [args.data, args.pretrained, *([args.decontaminate] if args.decontaminate else [])]
    run_stage("finetune_instruct", inputs, args.output, work)


if __name__ == "__main__":
    main()
