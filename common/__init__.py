"""The framework-neutral half of ganparity (ganparity.common).

The core, numpy and the standard library only: spec/ (architecture and recipes as data, one
registry), shapes, flops, weights, inputs, differences, porting, backend (the contract and
get_backend), parity, files, errors. The applications over it: gan/ and finetune/. The command:
cli/. A framework is imported only when a backend is asked for by name (common.backend).
"""
