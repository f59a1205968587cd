"""The framework halves of ganparity: backends/torch and backends/mxnet, mirrored file by file.

Nothing here imports a framework: common.backend.get_backend(name) imports one when asked.
"""
