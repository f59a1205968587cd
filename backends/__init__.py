"""The framework halves of ganparity (ganparity.backends): backends/torch and backends/mxnet,
mirrored file by file and function by function. Each imports only the core (ganparity.common)
and its own framework; nothing here imports a framework until common.backend.get_backend(name)
imports backends/<name>/api.py."""
