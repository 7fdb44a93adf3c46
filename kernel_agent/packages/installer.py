"""Install wheels with the host's pip into a session's package directory, bounded, off the event loop.

Two pip runs per request, both asynchronous subprocesses bounded in time
and output: ``pip download`` of wheels only (``--only-binary :all:``: an
sdist would run its build code on the host, often as root) and without
dependencies into a fresh host-private directory; then, once every file there
is checked to be the wheel asked for and hashed, ``pip install --no-index
--target`` of exactly those files into the package directory (created by the
sandbox provisioner in the host's run directory; the kernel sees it
read-only). A recording's installs are fetched the same way with
``--require-hashes``: the very files recorded, or nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import os
import resource
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from kernel_agent.errors import PackageInstallError
from kernel_agent.packages.policy import PackagePolicy
from kernel_agent.sandbox.hostpython import helper_env

#: Given as options, not variables: they hold with --isolated too.
_QUIET = ["--no-input", "--disable-pip-version-check", "--progress-bar", "off", "--no-color"]


@dataclass(frozen=True)
class InstalledPackage:
    """One wheel installed for a session: what a record keeps of it."""

    name: str
    version: str
    wheel: str
    sha256: str

    def as_record(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "wheel": self.wheel, "sha256": self.sha256}


async def run_pip(policy: PackagePolicy, command: str, arguments: list[str], cwd: Path) -> str:
    """Run ``pip command`` with ``arguments`` in ``cwd`` (host-private); its output's tail, or PackageInstallError.

    pip runs isolated from what a kernel can write and from the host's
    secrets (see :mod:`kernel_agent.sandbox.hostpython`): ``python -I``, a
    private working directory, a minimal environment (``PIP_`` variables
    pass unless the policy is ``isolated``).
    """
    if policy.isolated:  # pip's --isolated skips user configuration and variables, not the global files
        env = helper_env(PIP_CONFIG_FILE=os.devnull)
    else:
        env = helper_env(prefixes=("PIP_",))
    # No file pip writes (a download, its temporary copy, its cache entry, an installed file) may exceed
    # max_wheel_bytes: a source that serves an endless or enormous "wheel" cannot fill the host's disk.
    # A C function as preexec_fn: nothing of Python's (imports, locks) runs in the forked child.
    limit_file_size = functools.partial(resource.setrlimit, resource.RLIMIT_FSIZE,
                                        (policy.max_wheel_bytes, policy.max_wheel_bytes))
    process = await asyncio.create_subprocess_exec(
        *policy.pip_command(), command, *_QUIET, *policy.source_options(), *arguments,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True,
        preexec_fn=limit_file_size,
        umask=0o022)  # what pip writes must be readable by the sandbox's uid
    tail = bytearray()
    assert process.stdout is not None
    try:
        async with asyncio.timeout(policy.timeout):
            while chunk := await process.stdout.read(65536):
                tail += chunk
                del tail[:-policy.max_output_bytes]
            status = await process.wait()
    except TimeoutError:
        raise PackageInstallError(f"pip did not finish within {policy.timeout:g} s") from None
    finally:
        if process.returncode is None:  # timed out or cancelled (the tool call's own timeout): pip and its children
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    output = tail.decode(errors="replace").strip()
    # Python ignores SIGXFSZ (and pip inherits that): an oversized write fails with EFBIG, which pip reports.
    if status != 0 and (status == -signal.SIGXFSZ or f"[Errno {errno.EFBIG}]" in output):
        raise PackageInstallError(f"pip {command} stopped: a file was larger than the package policy's "
                                  f"max_wheel_bytes ({policy.max_wheel_bytes:,} bytes)")
    if status != 0:
        raise PackageInstallError(f"pip {command} failed (exit status {status}; only wheels are installed, an sdist "
                                  f"is never built): {output[-2000:]}")
    return output


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _check_downloads(directory: Path, wanted: dict[str, Requirement]) -> list[tuple[Path, InstalledPackage]]:
    """Every downloaded file is the wheel of one requirement, each requirement has one: hashed."""
    found: dict[str, tuple[Path, InstalledPackage]] = {}
    for path in sorted(directory.iterdir()):
        try:
            name, version, _build, _tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            raise PackageInstallError(f"pip gave {path.name}, which is not a wheel; only wheels are installed") \
                from None
        name = canonicalize_name(name)
        requirement = wanted.get(name)
        if requirement is None or name in found or not path.is_file():
            raise PackageInstallError(f"pip gave {path.name}, which was not asked for")
        if not requirement.specifier.contains(version, prereleases=True):
            raise PackageInstallError(f"pip gave {path.name}, which is not {requirement}")
        found[name] = (path, InstalledPackage(name, str(version), path.name, _sha256(path)))
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise PackageInstallError(f"pip gave no wheel for {', '.join(missing)}")
    return [found[name] for name in wanted]


async def install_wheels(policy: PackagePolicy, target: Path, requirements: list[Requirement],
                         hashes: dict[str, str] | None = None) -> list[InstalledPackage]:
    """Download the wheels for ``requirements`` (pinned to ``hashes`` by name, if given), install them in ``target``."""
    with tempfile.TemporaryDirectory(prefix="kernel-agent-wheels-") as scratch:
        downloads = Path(scratch) / "wheels"
        downloads.mkdir()
        source: list[str]
        if hashes is not None:
            pinned = Path(scratch) / "requirements.txt"
            pinned.write_text("".join(f"{r} --hash=sha256:{hashes[r.name]}\n" for r in requirements))
            source = ["--require-hashes", "-r", str(pinned)]
        else:
            source = [str(r) for r in requirements]
        await run_pip(policy, "download", ["--dest", str(downloads), "--no-deps", "--only-binary", ":all:", *source],
                      cwd=Path(scratch))
        wanted = {r.name: r for r in requirements}
        checked = await asyncio.to_thread(_check_downloads, downloads, wanted)
        if hashes is not None:
            wrong = [package.wheel for _, package in checked if package.sha256 != hashes[package.name]]
            if wrong:
                raise PackageInstallError(f"{', '.join(wrong)}: not the recorded file (its sha256 differs)")
        await run_pip(policy, "install", ["--target", str(target), "--upgrade", "--no-deps", "--no-index",
                                          "--only-binary", ":all:", "--no-warn-script-location",
                                          *[str(path) for path, _ in checked]], cwd=Path(scratch))
        return [package for _, package in checked]


def describe(installed: list[InstalledPackage]) -> dict[str, Any]:
    """The result a kernel gets (and the record keeps) for an install."""
    return {"installed": [package.as_record() for package in installed]}
