"""Auditing one recorded notebook: read it through the shared reader, verify its chain, summarise it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kernel_agent.errors import UnusableRecordError
from kernel_agent.record import format as fmt
from kernel_agent.record.recording import read_recorded_document
from kernel_agent.verify.audit.chain import Verifier
from kernel_agent.verify.audit.report import (
    EXIT_INTACT,
    EXIT_PROBLEM,
    AuditInputError,
    AuditReport,
    ChainReport,
)
from kernel_agent.verify.audit.summary import summarise


def load_recorded_notebook(path: Path) -> dict[str, Any]:
    """The notebook as JSON, or AuditInputError saying in one line why it cannot be audited.

    The checks every consumer of a recording shares (file, JSON, fields, kernel-agent's metadata, the format
    version) are the reader's (:func:`kernel_agent.record.recording.read_recorded_document`); audit adds only
    what verifying needs: a chain algorithm it knows.
    """
    try:
        document = read_recorded_document(path)
    except UnusableRecordError as exc:
        raise AuditInputError(str(exc)) from None
    ours = document["metadata"][fmt.METADATA_KEY]
    algorithm = (ours.get("chain") or {}).get("algorithm") if isinstance(ours.get("chain"), dict) else None
    if algorithm not in (None, "sha256"):
        raise AuditInputError(f"{path} uses chain algorithm {algorithm!r}; this kernel-agent verifies sha256 only")
    return document


def read_key(key_env: str | None, key_file: str | None) -> bytes | None:
    """The HMAC key: from ``key_file`` (a trailing newline is dropped), else the environment.

    An explicitly named variable that is unset is an error (the user asked for
    a check that cannot run); the default variable being unset means "no key".
    An empty key means no key, as when recording.
    """
    if key_file is not None:
        try:
            key = Path(key_file).read_bytes()
        except OSError as exc:
            raise AuditInputError(f"cannot read the key file {key_file}: {exc.strerror}") from None
        key = key.rstrip(b"\r\n")
        if not key:
            raise AuditInputError(f"the key file {key_file} is empty")
        return key
    name = key_env or fmt.AUDIT_KEY_ENV
    value = os.environ.get(name)
    if not value:
        if key_env is not None:
            raise AuditInputError(f"the environment variable {key_env} is not set (or empty): no key to check with")
        return None
    return value.encode()



def audit_notebook(path: Path, key: bytes | None = None, public_key: Ed25519PublicKey | None = None) -> AuditReport:
    """Verify ``path`` (read only) and summarise it; AuditInputError if it cannot be audited.

    With no key the chain shows the record is consistent (nothing edited,
    removed, inserted or cut off relative to itself), not who wrote it:
    whoever can write the file can recompute a consistent chain. ``key``
    (the HMAC secret) proves it to the key's holders; ``public_key``
    (Ed25519) proves it to anyone who trusts that key.
    """
    document = load_recorded_notebook(path)
    verifier = Verifier(path, document, key, public_key)
    verifier.run()
    findings = sorted(verifier.findings, key=lambda f: f.position)  # stable: same position keeps check order
    problems = [f.problem for f in findings if f.problem.severity != "note"]
    notes = [f.problem for f in findings if f.problem.severity == "note"]
    chain = ChainReport(
        algorithm=verifier.chain.get("algorithm"), genesis=verifier.chain.get("genesis"),
        head=verifier.chain.get("head"), length=verifier.chain.get("length"),
        computed_genesis=verifier.computed_genesis, chained_cells=len(verifier.genuine), hmac=verifier.hmac_status,
        signature=verifier.signature_status,
    )
    tampered = [p for p in problems if p.severity == "tampered"]
    incomplete = [p for p in problems if p.severity == "incomplete"]
    verdict: Literal["intact", "tampered", "incomplete"]
    if tampered or incomplete:
        verdict = "tampered" if tampered else "incomplete"
        first = (tampered or incomplete)[0]
        more = len(problems) - 1
        headline = f"{verdict.upper()}: {first.message}"
        headline += f" (+{more} more problem{'s' * (more > 1)})" if more else ""
    else:
        verdict = "intact"
        signed = {"valid": ", HMAC valid", "not_checked": ", HMAC not checked (no key)",
                  "unsigned": "", "invalid": ""}[verifier.hmac_status]
        signed += {"valid": ", signature valid", "not_checked": ", signature not checked (no public key)",
                   "unsigned": "", "invalid": ""}[verifier.signature_status]
        if not signed:
            signed = ", unsigned: consistent, authorship not proven"
        headline = f"INTACT: {len(verifier.genuine)} cells verified, sealed (sha256 chain{signed})"
    return AuditReport(
        notebook=str(path), verdict=verdict, headline=headline,
        exit_code=EXIT_INTACT if verdict == "intact" else EXIT_PROBLEM,
        problems=problems, notes=notes, chain=chain, summary=summarise(verifier),
    )
