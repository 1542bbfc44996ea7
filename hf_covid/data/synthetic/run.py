"""Command line of the phantom generator: ``hf-covid synth`` and ``scripts/make_synthetic.py``.

Example::

    hf-covid synth --output outputs/demo/data --layout all --images-per-class 200
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .layouts import generate_all, generate_paired_xray_ct, generate_radiography, generate_xray_ct
from .render import DIFFICULTIES

__all__ = ["LAYOUTS", "main", "parse_arguments"]

LAYOUTS = ("radiography", "xray-ct", "xray-ct-paired", "all")
"""The ``--layout`` choices: one public layout, the patient-paired X-ray + CT variant, or all."""


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see ``--help``)."""
    parser = argparse.ArgumentParser(
        description="Write synthetic chest phantom datasets laid out like the public ones "
        "(see hf_covid.data.synthetic)."
    )
    parser.add_argument("--output", type=Path, required=True, help="folder to write")
    parser.add_argument("--layout", choices=LAYOUTS, default="all")
    parser.add_argument("--images-per-class", type=int, default=50, help="(patients for paired)")
    parser.add_argument(
        "--image-size", type=int, default=299, help="radiography image side in pixels"
    )
    parser.add_argument("--mask-size", type=int, default=256, help="radiography lung-mask side")
    parser.add_argument(
        "--size-range",
        type=int,
        nargs=2,
        default=(256, 512),
        metavar=("MIN", "MAX"),
        help="X-ray + CT image sides in pixels",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--difficulty", choices=tuple(DIFFICULTIES), default="medium")
    parser.add_argument(
        "--shortcut", action="store_true", help="stamp a class-correlated corner marker"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the synthetic data in --output"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the requested layout and print where it went.

    Returns:
        The exit status: 0, or 2 when the options or the output folder are refused.
    """
    args = parse_arguments(argv)
    common = {
        "seed": args.seed,
        "difficulty": args.difficulty,
        "shortcut": args.shortcut,
        "overwrite": args.overwrite,
        "progress": not args.no_progress,
    }
    radiography = {"image_size": args.image_size, "mask_size": args.mask_size}
    size_range = tuple(args.size_range)
    try:
        if args.layout == "radiography":
            root = generate_radiography(
                args.output, images_per_class=args.images_per_class, **radiography, **common
            )
        elif args.layout == "xray-ct":
            root = generate_xray_ct(
                args.output,
                images_per_class=args.images_per_class,
                size_range=size_range,
                **common,
            )
        elif args.layout == "xray-ct-paired":
            root = generate_paired_xray_ct(
                args.output,
                patients_per_class=args.images_per_class,
                size_range=size_range,
                **common,
            )
        else:
            root = generate_all(
                args.output,
                images_per_class=args.images_per_class,
                size_range=size_range,
                **radiography,
                **common,
            )
    except (ValueError, FileExistsError, NotADirectoryError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.layout} synthetic data to {root.resolve()}:")
    for entry in sorted(root.iterdir()):
        print(f"  {entry.name}{'/' if entry.is_dir() else ''}")
    return 0
