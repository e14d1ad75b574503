"""Pretrain: `python launch/pretrain.py --config FILE [--set KEY=VALUE ...]` (also under torchrun or deepspeed).

Exit codes: 0 done, 2 config error, 3 stopped on non-finite steps, 4 data error, 5 checkpoint error, 6 the run
folder holds another run, 7 the planner predicts more memory than there is;
8 a collective timed out (a rank stopped or hangs); after a preemption signal (checkpoint written): 144 on
SIGUSR1/SIGUSR2 (requeue me), 143 on SIGTERM."""
from jepa_scale.config import load_config
from jepa_scale.launch.cli import exit_process, run_main, run_parser, setup_logging
from jepa_scale.trainer import train


def pretrain(args) -> int:
    summary = train(load_config(args.config, args.overrides), local_rank=args.local_rank)
    if summary["rank"]:
        return 0
    print(f"done: {summary['step']} steps, final loss {summary['loss']:.4f}")
    print(f"  checkpoint:  {summary['checkpoint']}")
    print(f"  CSV log:     {summary['csv']}")
    print(f"  tensorboard: tensorboard --logdir {summary['tensorboard']}")
    if summary["skipped_videos"]:
        print(f"  skipped videos (see skipped_videos.tsv): {summary['skipped_videos']}")
    return 0


def main(argv=None) -> int:
    args = run_parser(__doc__, "pretraining").parse_args(argv)
    setup_logging()
    return run_main(pretrain, args)


if __name__ == "__main__":
    exit_process(main())
