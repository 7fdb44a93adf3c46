"""Fixtures of the attack tests: the host state before attacks, planted secrets, shared and limited sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from kernel_agent import SandboxPolicy, Session

from .support import (
    ROOT_SECRET_TEXT,
    SECRET_ENV_NAME,
    SECRET_ENV_VALUE,
    SECRET_FILE_TEXT,
    SMALL_LIMITS,
    TAG,
    HostBaseline,
    HostSecrets,
)


@pytest.fixture(scope="module")
def host_baseline() -> HostBaseline:
    """Host state before any attack ran."""
    return HostBaseline.take()


@pytest.fixture(scope="module")
def host_secrets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostSecrets]:
    """A secret file outside any workspace, one in /root, and a host tmp dir with a sentinel."""
    secret_dir = tmp_path_factory.mktemp("host-secrets")
    secret_file = secret_dir / "secret.txt"
    secret_file.write_text(SECRET_FILE_TEXT)
    host_tmp_dir = tmp_path_factory.mktemp("host-tmp-target")
    sentinel = host_tmp_dir / "sentinel.txt"
    sentinel.write_text("host sentinel")
    candidate = Path("/root") / f".kernel-agent-attack-{TAG}.secret"
    root_secret: Path | None = candidate
    try:
        candidate.write_text(ROOT_SECRET_TEXT)
    except OSError:
        root_secret = None
    yield HostSecrets(secret_file, root_secret, host_tmp_dir, sentinel)
    if root_secret is not None:
        root_secret.unlink(missing_ok=True)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory, host_secrets: HostSecrets) -> AsyncIterator[Session]:
    """One strict-policy session for the cheap attacks, started with a secret in the host's environment."""
    workspace = tmp_path_factory.mktemp("shared") / "workspace"
    workspace.mkdir()
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(SECRET_ENV_NAME, SECRET_ENV_VALUE)
        async with Session(workspace, default_timeout=60) as session:
            yield session


@pytest_asyncio.fixture
async def limited(workspace: Path) -> AsyncIterator[Session]:
    """A fresh session with small memory, process, /tmp and file-size limits."""
    async with Session(workspace, policy=SandboxPolicy(limits=SMALL_LIMITS), default_timeout=60,
                       interrupt_grace=1.0) as session:
        yield session
