"""The mxnet backend. common.backend.get_backend('mxnet') imports its api.py; this package itself
imports nothing, so the pure-data files (layers.py, zoo.py) stay framework-free."""
