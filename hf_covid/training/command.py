"""The training command line (``hf-covid train``, ``scripts/train.py``, ``accelerate launch``).

It parses the arguments first and imports the training stack (:mod:`.run`: datasets, the
Trainer, evaluation, figures, the Hub) only then, so ``--help`` and a bad option cost the
argument parser alone.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from .arguments import ConfigurationError, parse_arguments

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: parse, train, print the summary. Returns the exit status."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    try:
        model_args, data_args, training_args = parse_arguments(argv)
        # After parsing on purpose (see the module docstring); the architecture test allows a
        # command's main() this one deferred import.
        from .run import format_summary, train

        results = train(model_args, data_args, training_args)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if training_args.process_index == 0:
        print(format_summary(results, training_args.output_dir))
    return 0
