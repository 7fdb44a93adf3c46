"""The host's handle on running kernels: the launched process, its connection, output collection, the pool."""
