"""MXNet Gluon backend. Import backends.mxnet.api (through common.backend.get_backend) to use it;
this package itself imports nothing, so `import backends.mxnet.layers` stays framework-free."""
