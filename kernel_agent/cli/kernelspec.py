"""``kernel-agent kernelspec install``: install the kernel-agent kernelspec for Jupyter."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group("kernelspec", short_help="manage the Jupyter kernelspec")
def command() -> None:
    """Manage the Jupyter kernelspec."""


@command.command("install", short_help="install the kernel-agent kernelspec")
@click.option("--user", is_flag=True, help="for the current user (default)")
@click.option("--sys-prefix", is_flag=True, help="into this Python environment")
@click.option("--variant", type=click.Choice(["local", "gateway"]), default="local", show_default=True,
              help="gateway: for servers that run the kernel command themselves (Enterprise Gateway 3.x)")
def install(user: bool, sys_prefix: bool, variant: str) -> int:
    """Install the kernel-agent kernelspec (for the current user unless --sys-prefix)."""
    from kernel_agent.kernelspec.gateway import install_gateway_kernelspec
    from kernel_agent.kernelspec.spec import install_kernelspec

    if user and sys_prefix:
        raise click.UsageError("--user and --sys-prefix are exclusive: give one place")
    installer = install_gateway_kernelspec if variant == "gateway" else install_kernelspec
    path = installer(user=not sys_prefix, prefix=sys.prefix if sys_prefix else None)
    print(f"installed the {Path(path).name} kernelspec in {path}")
    return 0
