"""Attack from inside a kernel: a library the sandbox can reach is never followed out of, nor trusted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernel_agent import Session
from kernel_agent.errors import SkillLibraryError
from kernel_agent.skills import SkillLibrary

from .fake_source import PARSE, SLUG

ATTACK = """
import os, json
lib = "lib"
report = {}
def attempt(name, action):
    try:
        action()
        report[name] = "done"
    except OSError as exc:
        report[name] = type(exc).__name__
# The index becomes a link to a host file, the versions directory a link to a host directory, the lock a link.
attempt("index", lambda: (os.remove(f"{lib}/index.json"), os.symlink(SECRET, f"{lib}/index.json")))
attempt("lock", lambda: (os.remove(f"{lib}/.lock"), os.symlink(SECRET, f"{lib}/.lock")))
def swap_versions():
    for name in os.listdir(f"{lib}/versions"):
        os.remove(f"{lib}/versions/{name}")
    os.rmdir(f"{lib}/versions")
    os.symlink(OUTSIDE, f"{lib}/versions")
attempt("versions", swap_versions)
print(json.dumps(report))
"""


@pytest.mark.asyncio
async def test_a_kernel_cannot_lead_the_host_out_of_a_library_it_can_reach(tmp_path: Path) -> None:
    workspace, outside = tmp_path / "workspace", tmp_path / "outside"
    workspace.mkdir()
    outside.mkdir()
    secret = tmp_path / "secret.json"
    original = SkillLibrary(workspace / "lib")  # a careless operator: the library inside the workspace
    original.add("parse_amount", PARSE, "Parse an amount")
    secret.write_bytes((workspace / "lib" / "index.json").read_bytes())  # what a followed link would read
    before = secret.read_bytes()
    async with Session(workspace, notebook=False) as session:
        code = f"SECRET = {str(secret)!r}\nOUTSIDE = {str(outside)!r}\n" + ATTACK
        result = await session.execute(code)
        assert result.ok, result.error
        report = json.loads(result.stdout.splitlines()[-1])
    assert set(report) == {"index", "lock", "versions"}
    # Whatever the kernel managed (it may own the workspace's files), the host reads nothing through a link,
    # writes nothing outside, and names the problem.
    try:
        library = SkillLibrary(workspace / "lib")
        library.add("slugify", SLUG, "Make a slug")
        skills = [s.name for s in library.skills()]
    except SkillLibraryError as exc:
        assert "link" in str(exc) or "belongs to user" in str(exc) or "others can write" in str(exc), exc
    else:  # the kernel could not touch the library at all
        assert set(report.values()) == {"PermissionError"}, report
        assert skills == ["parse_amount", "slugify"]
    assert secret.read_bytes() == before
    assert list(outside.iterdir()) == []
