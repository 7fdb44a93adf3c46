"""Code that runs INSIDE the kernel process.

Nothing here imports from the host side of kernel_agent: this package is
what the sandbox executes, and the host only locates it.
"""
