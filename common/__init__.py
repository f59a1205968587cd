"""The framework-neutral half of ganparity (ganparity.common).

The core, numpy and the standard library only: spec/ (architecture and recipes as data, one
registry), shapes, flops, weights, inputs, differences, sheets, backend (the contract and
get_backend), parity, verdicts, files, errors. The applications over it: gan/, finetune/, compare/, port/
and report/. The command:
cli/. A framework is imported only when a backend is asked for by name (common.backend).
"""
