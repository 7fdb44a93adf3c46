"""Ed25519 signatures of a recording's chain, so a third party can verify it without a shared secret.

The HMAC (``KERNEL_AGENT_AUDIT_KEY``) proves a recording to whoever holds
the same secret, which is also whoever could forge one. A public-key
signature separates the two: the host signs the sealed chain with a
private key (``KERNEL_AGENT_SIGNING_KEY`` names its file, or
``Session(signing_key=...)``), and anyone with the public key checks it
(``kernel-agent audit --public-key FILE``). ``kernel-agent keygen`` makes a
pair. Keys are stored as PEM (PKCS#8 private, SubjectPublicKeyInfo public);
a public key may also be given as 64 hex digits (the raw key, as the
notebook stores it).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kernel_agent.errors import RecordingError

SIGNING_KEY_ENV = "KERNEL_AGENT_SIGNING_KEY"
ALGORITHM = "ed25519"
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")

SigningKeySource = Ed25519PrivateKey | bytes | str | os.PathLike[str]


def load_private_key(source: SigningKeySource) -> Ed25519PrivateKey:
    """A private key from a key object, PEM bytes, or the path of a PEM file."""
    if isinstance(source, Ed25519PrivateKey):
        return source
    data = source if isinstance(source, bytes) else _read(Path(source), "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise RecordingError(f"the signing key is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise RecordingError(f"the signing key is a {type(key).__name__}; kernel-agent signs with Ed25519 "
                             "(make one with `kernel-agent keygen`)")
    return key


def load_public_key(source: Ed25519PublicKey | bytes | str | os.PathLike[str]) -> Ed25519PublicKey:
    """A public key from a key object, 64 hex digits, PEM bytes, or the path of a PEM (or hex) file."""
    if isinstance(source, Ed25519PublicKey):
        return source
    if isinstance(source, str) and _HEX_KEY.fullmatch(source.strip()):
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(source.strip()))
    data = source if isinstance(source, bytes) else _read(Path(source), "public key")
    text = data.strip()
    if _HEX_KEY.fullmatch(text.decode("ascii", "replace")):
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.decode()))
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise RecordingError(f"the public key is neither PEM nor 64 hex digits: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise RecordingError(f"the public key is a {type(key).__name__}, not an Ed25519 key")
    return key


def public_hex(key: Ed25519PublicKey) -> str:
    """The raw public key, hex (what the notebook stores)."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def fingerprint(public_key_hex: str) -> str:
    """A short name for a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, statement: str) -> dict[str, str]:
    """The signature record stored in ``chain.signature``."""
    return {"algorithm": ALGORITHM, "public_key": public_hex(key.public_key()),
            "value": key.sign(statement.encode()).hex()}


def verify(key: Ed25519PublicKey, statement: str, signature_hex: str) -> bool:
    """Whether ``signature_hex`` is ``key``'s signature of ``statement``."""
    try:
        key.verify(bytes.fromhex(signature_hex), statement.encode())
    except (InvalidSignature, ValueError):
        return False
    return True


def generate_keypair(private_path: Path) -> Path:
    """Write a new private key to ``private_path`` (mode 0600, never overwriting) and its public key beside it."""
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    public_path = private_path.with_name(private_path.name + ".pub")
    for path in (private_path, public_path):
        if os.path.lexists(path):
            raise RecordingError(f"{path} already exists; choose another name (a key is never overwritten)")
    for path, data, mode in ((private_path, private_pem, 0o600), (public_path, public_pem, 0o644)):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        except FileExistsError:
            raise RecordingError(f"{path} already exists; choose another name (a key is never overwritten)") from None
        except OSError as exc:
            raise RecordingError(f"cannot create {path}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    return public_path


def _read(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(64 * 1024 + 1)
    except OSError as exc:
        raise RecordingError(f"cannot read the {what} {path}: {exc.strerror}") from None
    if len(data) > 64 * 1024:
        raise RecordingError(f"{path} is too large to be a {what}")
    return data
