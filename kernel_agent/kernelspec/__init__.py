"""The kernel-agent kernelspec: one definition for our sessions and for Jupyter frontends."""
