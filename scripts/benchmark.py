"""Benchmark every hf_covid case against its baseline in one run; write JSON and Markdown.

    python scripts/benchmark.py             # full run, writes benchmarks/results.{json,md}
    python scripts/benchmark.py --quick     # CI: every case, small, into a temporary folder
    python scripts/benchmark.py --quick --output-dir /tmp/bench

The cases and options: ``python scripts/benchmark.py --help``
(:mod:`hf_covid.benchmarks.run`); same as
``hf-covid bench``.
"""

import sys

from hf_covid.benchmarks.run import main

if __name__ == "__main__":
    sys.exit(main())
