"""Evaluate a checkpoint on a data split, or validate it on an external folder.

Examples:
    python scripts/evaluate_checkpoint.py outputs/demo/checkpoints/cnn_lstm \
        --data_dir outputs/demo/data/radiography
    python scripts/evaluate_checkpoint.py outputs/demo/checkpoints/cnn_lstm \
        --data_dir /data/other_hospital --output_dir /tmp/external   # e.g. COVID/ and Normal/

Writes eval_results.json, report.md and figures/ (default: <checkpoint>/evaluation_<split>) and
prints a short table. See hf_covid.evaluation.run.
"""

import sys

from hf_covid.evaluation.run import main

if __name__ == "__main__":
    sys.exit(main())
