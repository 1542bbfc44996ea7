"""Evaluate a checkpoint on a data split: metrics with bootstrap intervals, report and figures.

Examples:
    python scripts/evaluate.py outputs/demo/checkpoints/cnn_lstm \
        --data_dir outputs/demo/data/radiography
    python scripts/evaluate.py outputs/demo/checkpoints/dual_input \
        --data_dir outputs/demo/data/xray_ct --split validation --output_dir /tmp/eval

Writes eval_results.json, report.md and figures/ (default: <checkpoint>/evaluation_<split>) and
prints a short table. See hf_covid.evaluation.evaluate_checkpoint.
"""

import argparse
import sys

from hf_covid.evaluation import evaluate_checkpoint, format_summary


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="checkpoint folder or Hub repository id")
    parser.add_argument(
        "--data_dir", required=True, help="dataset root, or a dataset saved with save_to_disk"
    )
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument(
        "--output_dir", default=None, help="default: <checkpoint>/evaluation_<split>"
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--n_resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--confidence", type=float, default=0.95, help="interval coverage")
    parser.add_argument(
        "--device", default=None, help="e.g. cpu, cuda (default: cuda if available)"
    )
    parser.add_argument("--no_figures", action="store_true", help="skip the figures")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_arguments(argv)
    results = evaluate_checkpoint(
        args.checkpoint,
        data_dir=args.data_dir,
        split=args.split,
        output_dir=args.output_dir,
        batch_size=args.batch_size,
        device=args.device,
        n_resamples=args.n_resamples,
        confidence=args.confidence,
        figures=not args.no_figures,
    )
    print(format_summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
