"""Framework-neutral half of ganparity: specs, shapes, weights, data, parity checks, the CLI.

Imports numpy and the standard library only. A framework is imported when a backend is asked
for by name (see common.backend.get_backend).
"""
