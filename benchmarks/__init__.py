"""Step-cost benchmarks over the core (imported by the CLI, never by common/'s core):

    variants.py     the named ways to run a step, and each one's parity check against the default
    timing.py       warm-up, synced rounds, quantiles, phase splits
    environment.py  versions, threads, flags, commit, load; the GEMM peak measured beside a row
    harness.py      one row per spec x backend x variant x device x batch size, and the matrix
    results.py      markdown, plots, JSON; the report's quick CPU section
    gpu_run.py      the one prepared GPU run, a process per part, inside a time budget (docs/bench.md)
    results/        the measured numbers, committed with their metadata
"""
