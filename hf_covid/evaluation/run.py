"""The evaluate command: a checkpoint on a data split, or on an external folder.

``python scripts/evaluate_checkpoint.py CHECKPOINT --data_dir FOLDER`` (or ``hf-covid evaluate``)
evaluates the training run's test split when ``FOLDER`` holds all of the model's classes; a
Radiography-layout folder that holds only some of them (e.g. just ``COVID/`` and ``Normal/``), or
``--split external``, is external validation: every image of the folder, the missing classes
named, and only the metrics that still make sense (COVID sensitivity, specificity against the
classes present, ROC-AUC of COVID vs the rest) with bootstrap intervals. Results go to
``--output_dir`` (default ``<checkpoint>/evaluation_<split>``), never into the data folder.
``--dataset_name NAME`` names an external set: a local checkpoint stores the results in
``<checkpoint>/evaluation_external_<slug of NAME>`` and its model card lists them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from hf_covid.checkpoints import MODEL_CARD_FILE

from .checkpoint import evaluate_checkpoint
from .external import card_checkpoint, external_output_dir
from .report import EXTERNAL_SPLIT, format_summary

__all__ = ["main", "parse_arguments"]

_EXAMPLES = """examples:
  python scripts/evaluate_checkpoint.py outputs/demo/checkpoints/cnn_lstm \\
      --data_dir outputs/demo/data/radiography
  python scripts/evaluate_checkpoint.py outputs/demo/checkpoints/dual_input \\
      --data_dir outputs/demo/data/xray_ct --split validation --output_dir /tmp/eval
  python scripts/evaluate_checkpoint.py outputs/demo/checkpoints/cnn_lstm \\
      --data_dir /data/other_hospital --output_dir /tmp/external   # COVID/ and Normal/ only
  python scripts/evaluate_checkpoint.py outputs/demo/checkpoints/cnn_lstm \\
      --data_dir /data/other_hospital --dataset_name "Other hospital"   # on the model card
"""


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of the evaluate command (see :func:`main`)."""
    parser = argparse.ArgumentParser(
        description="Evaluate a checkpoint on a data split (metrics with bootstrap intervals, "
        "report and figures), or validate it on an external folder.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="checkpoint folder or Hub repository id")
    parser.add_argument(
        "--data_dir",
        required=True,
        help="dataset root, a dataset saved with save_to_disk, or an external folder in the "
        "Radiography layout (any of the model's classes)",
    )
    parser.add_argument(
        "--split",
        default="test",
        help=f"split to evaluate (default: test); '{EXTERNAL_SPLIT}': every image of the folder",
    )
    parser.add_argument(
        "--output_dir",
        default=None,
        help="default: <checkpoint>/evaluation_<split>; with --dataset_name, "
        "<checkpoint>/evaluation_external_<slug of NAME>",
    )
    parser.add_argument(
        "--dataset_name",
        default=None,
        metavar="NAME",
        help="name of the external data set (external validation only): a local checkpoint "
        "stores the results with it, replacing an earlier evaluation under NAME, and its model "
        "card gets a model-index entry for NAME beside the internal results",
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--n_resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--confidence", type=float, default=0.95, help="interval coverage")
    parser.add_argument(
        "--device", default=None, help="e.g. cpu, cuda (default: cuda if available)"
    )
    parser.add_argument("--no_figures", action="store_true", help="skip the figures")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run :func:`~hf_covid.evaluation.checkpoint.evaluate_checkpoint` and print a summary.

    Returns:
        The exit status (0).
    """
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
        dataset_name=args.dataset_name,
    )
    print(format_summary(results))
    if args.dataset_name is not None:
        print(_card_line(args.checkpoint, args.dataset_name, args.output_dir))
    return 0


def _card_line(checkpoint: str, dataset_name: str, output_dir: str | None) -> str:
    """What happened to the model card after a named external evaluation."""
    folder = card_checkpoint(checkpoint, dataset_name, output_dir)
    if folder is not None:
        return f"model card {folder / MODEL_CARD_FILE} lists the results on {dataset_name!r}"
    where = external_output_dir(checkpoint, dataset_name, output_dir)
    if not Path(checkpoint).expanduser().is_dir():
        return (
            f"model card not changed: {checkpoint} is a Hub id (its download is never written "
            f"to); the results are in {where}. To put them on its card, download it to a folder "
            "(hf download REPO --local-dir DIR), evaluate DIR with --dataset_name and push DIR"
        )
    return (
        f"model card not changed: the results are in {where}, not stored with the checkpoint; "
        "leave out --output_dir to add them to its card"
    )
