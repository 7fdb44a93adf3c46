"""What the host and the in-kernel runtime agree on: value encoding, bounded JSON, shared names.

Standard library only, and importing nothing else of kernel_agent: both
processes import it (the kernel knows nothing of the host side).
"""
