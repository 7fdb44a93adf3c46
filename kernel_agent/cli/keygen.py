"""``kernel-agent keygen PATH``: make an Ed25519 key pair for signing recordings."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("keygen", short_help="make an Ed25519 key pair for signing recordings",
               help="Write a new private key (mode 0600) and PATH.pub beside it. Sessions sign their recordings "
                    "with the private key (KERNEL_AGENT_SIGNING_KEY=PATH); anyone verifies them with the public "
                    "key (audit --public-key).")
@click.argument("private_key", metavar="PATH")
def command(private_key: str) -> int:
    from kernel_agent.record.signing import SIGNING_KEY_ENV, generate_keypair

    private = Path(private_key)
    public = generate_keypair(private)
    print(f"private key: {private} (mode 0600; give it to sessions with {SIGNING_KEY_ENV}={private})\n"
          f"public key:  {public} (give it to auditors: kernel-agent audit NOTEBOOK --public-key {public})")
    return 0
