"""Frozen-backbone probe: `python launch/eval.py --config FILE [--set KEY=VALUE ...]` (also under torchrun or
deepspeed). FILE is an official V-JEPA or V-JEPA 2 eval config (or ours); `--set probe.val_only=true` (or the V2
`val_only: true`) evaluates a trained probe instead of training one.

Exit codes as launch/pretrain.py: 0 done, 2 config error, 3 non-finite steps, 4 data error, 5 checkpoint error,
6 the output folder holds another run, 8 a collective timed out; 144/143 after a preemption signal."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when jepa_scale is not installed

from jepa_scale.config import load_config  # noqa: E402
from jepa_scale.evals.runner import evaluate  # noqa: E402
from jepa_scale.launch.cli import exit_process, run_main, run_parser, setup_logging  # noqa: E402


def _line(name: str, r: dict) -> str:
    head = f" (head {r['head']} of {len(r['per_head'])}, {r['selection']})" if len(r["per_head"]) > 1 else ""
    return (f"{name}: top-1 {r['top1']:.2f}% per sample, {r['top1_per_batch']:.2f}% as the official per-batch mean, "
            f"on {r['num_samples']} validation samples{head}")


def run_eval(args) -> int:
    cfg = load_config(args.config, args.overrides)
    result = evaluate(cfg, local_rank=args.local_rank)
    baseline = None
    if args.random_init_baseline and not result["rank"]:
        print(_line("pretrained backbone", result))
    if args.random_init_baseline:
        folder = Path(result["folder"]) / "random_init_baseline"
        base_cfg = load_config(args.config, [*args.overrides, f"probe.output_folder={folder}", "probe.overwrite=true"])
        baseline = evaluate(base_cfg, local_rank=args.local_rank, encoder_checkpoint="")
    if result["rank"]:
        return 0
    print(_line("random-init backbone" if baseline else "probe", baseline or result))
    if baseline:
        print(f"pretrained minus random-init: {result['top1'] - baseline['top1']:+.2f} points of top-1")
    print(f"  results: {result['results_json']}")
    print(f"  tensorboard: tensorboard --logdir {Path(result['folder']) / 'tensorboard'}")
    return 0


def main(argv=None) -> int:
    p = run_parser(__doc__, "eval")
    p.add_argument("--random-init-baseline", action="store_true",
                   help="also train the same probe on a randomly initialised backbone of the same shape and print "
                        "both top-1s (does the pretraining help?)")
    args = p.parse_args(argv)
    setup_logging()
    return run_main(run_eval, args)


if __name__ == "__main__":
    exit_process(main())
