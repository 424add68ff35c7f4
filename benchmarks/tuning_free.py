"""The tuning-free benchmark (``adaptlr bench tuning-free``): Auto, untuned AdamW, the learning-rate-free methods
and the range test against a tuned 7-point lr grid on every lab task, 3 seeds; see
:mod:`adaptlr.lab.tuning_free`.

    nice python benchmarks/tuning_free.py --store tuning_free.db --jobs 2
"""

import sys

from adaptlr.lab.tuning_free import main

if __name__ == "__main__":
    sys.exit(main())
