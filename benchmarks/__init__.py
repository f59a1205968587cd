"""Step-cost benchmarks: the harness, the pytest-benchmark suites and the measured results/."""
