"""The main job: synthetic data -> train the demo models -> evaluate -> serve the app.

python scripts/demo.py                 # everything, then serve on http://127.0.0.1:7860
python scripts/demo.py --no-serve      # stop after the evaluation reports
python scripts/demo.py --retrain       # remake data and checkpoints even if they exist
HF_COVID_REUSE=0 make demo             # same as --retrain
"""

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hf_covid.demo import DEMO_MODELS, DemoSettings, run_demo


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo the command line asks for; returns the exit status."""
    defaults = DemoSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=defaults.output_dir)
    parser.add_argument("--images-per-class", type=int, default=defaults.images_per_class)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--models", nargs="+", choices=DEMO_MODELS, default=list(DEMO_MODELS))
    parser.add_argument(
        "--retrain",
        action="store_true",
        default=os.environ.get("HF_COVID_REUSE", "1") == "0",
        help="remake the data and checkpoints even when they exist",
    )
    parser.add_argument("--no-serve", dest="serve", action="store_false")
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port)
    arguments = parser.parse_args(argv)
    run_demo(
        DemoSettings(
            output_dir=arguments.output_dir,
            images_per_class=arguments.images_per_class,
            seed=arguments.seed,
            models=arguments.models,
            reuse=not arguments.retrain,
            serve=arguments.serve,
            host=arguments.host,
            port=arguments.port,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
