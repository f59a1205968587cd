"""PyTorch backend. Import backends.torch.api (through common.backend.get_backend) to use it;
this package itself imports nothing, so `import backends.torch.layers` stays framework-free."""
