"""The tuning-free benchmark (``adaptlr bench tuning-free``): Auto, untuned AdamW, the learning-rate-free methods
and the range test against a tuned 7-point lr grid, 3 seeds, on the original twelve lab tasks, the stress tasks
and (when asked for) the holdout set; see :mod:`adaptlr.lab.tuning_free` (`--oracle`: Auto at the grid's lr, the ceiling of its choice).

    # everything (grid, baselines, range test, Auto) on the old and stress tasks
    nice python benchmarks/tuning_free.py --store tuning_free.db --jobs 2
    # pre-compute the grid only (one worker, one thread each)
    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/tuning_free.py --store out/bench.db \\
        --tasks old,stress,holdout --grid-only
    # then only Auto variants against that grid, each timed beside one plain run of its own
    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/tuning_free.py --store out/bench.db \\
        --tasks old,stress --methods Auto=auto 'Auto 1.5=auto(budget=1.5)'
"""

import sys

from adaptlr.lab.tuning_free_cli import main

if __name__ == "__main__":
    sys.exit(main())
