"""A kernel that builds a directory tree thousands of levels deep cannot break the host's cleanup or give-back.

``shutil.rmtree`` and ``os.fwalk`` recurse once a level; such a tree made them raise RecursionError in the
host (measured). The host walks kernel-shaped trees without recursion, one descriptor at a time.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kernel_agent import Session
from kernel_agent.safe_fs import chown_tree, open_dir, remove_tree, walk_tree

DEPTH = 3000  # past Python's recursion limit (1000)

DEEP_TREE = (
    "import os\n"
    "fd = os.open('.', os.O_RDONLY)\n"
    f"for i in range({DEPTH}):\n"
    "    os.mkdir('d', dir_fd=fd)\n"
    "    child = os.open('d', os.O_RDONLY, dir_fd=fd)\n"
    "    open(f'/proc/self/fd/{child}/f', 'w').write('x')\n"
    "    os.close(fd)\n"
    "    fd = child\n"
    "os.symlink('/etc/passwd', f'/proc/self/fd/{fd}/link')\n"
    "print('built')")


def remove_deep(directory: Path) -> None:
    parent_fd = open_dir(directory.parent)
    try:
        remove_tree(parent_fd, directory.name)
    finally:
        os.close(parent_fd)


async def test_a_deep_tree_in_a_temporary_workspace_is_removed_at_close() -> None:
    async with Session(default_timeout=120) as session:
        workspace = session.workspace
        assert (await session.execute(DEEP_TREE)).stdout == "built\n"
    assert not workspace.exists()
    assert Path("/etc/passwd").exists()


async def test_a_deep_tree_in_a_lent_workspace_is_given_back(workspace: Path) -> None:
    """The give-back walk reaches the bottom of the tree and changes owners only (no link followed)."""
    passwd = os.lstat("/etc/passwd")
    async with Session(workspace, default_timeout=120) as session:
        assert (await session.execute(DEEP_TREE)).stdout == "built\n"
    owner = os.stat(workspace).st_uid
    fd = open_dir(workspace)
    try:
        owners = {status.st_uid for _, _, status in walk_tree(fd)}
        depth = sum(1 for _, name, _ in walk_tree(fd) if name == "d")
    finally:
        os.close(fd)
    remove_deep(workspace)  # pytest's own clean-up of old temporary directories recurses
    assert owners == {owner} and depth == DEPTH
    after = os.lstat("/etc/passwd")
    assert (after.st_uid, after.st_gid, after.st_mode) == (passwd.st_uid, passwd.st_gid, passwd.st_mode)


def test_remove_and_chown_tree_handle_depth_without_recursion(tmp_path: Path) -> None:
    top = tmp_path / "top"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    for _ in range(DEPTH):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)
    top_fd = open_dir(top)
    try:
        assert chown_tree(top_fd, os.getuid(), os.getgid()) == 0  # already ours: walked to the bottom, no change
        assert sum(1 for _ in walk_tree(top_fd)) == DEPTH
    finally:
        os.close(top_fd)
    remove_deep(top)
    assert not top.exists()


def _on_loop() -> bool:
    import asyncio
    return asyncio._get_running_loop() is not None


async def test_workspace_removal_and_give_back_run_on_the_shared_event_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Removing a temporary workspace (hostlocks.remove_held_dir -> safe_fs.remove_tree) and giving a lent one
    back (ownership.give_back -> safe_fs.chown_tree) run off the event loop every session shares: a kernel
    that left 150,000 empty files stalled another session's loop for 2.2 s at close (measured, before)."""
    import kernel_agent.sandbox.hostlocks as hostlocks
    import kernel_agent.sandbox.ownership as ownership

    calls: list[tuple[str, bool]] = []
    real_remove, real_chown = hostlocks.remove_tree, ownership.chown_tree

    def remove_tree(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(("remove_tree", _on_loop()))
        return real_remove(*args, **kwargs)

    def chown_tree(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(("chown_tree", _on_loop()))
        return real_chown(*args, **kwargs)

    monkeypatch.setattr(hostlocks, "remove_tree", remove_tree)
    monkeypatch.setattr(ownership, "chown_tree", chown_tree)
    async with Session(default_timeout=60, notebook=False) as session:  # a temporary workspace
        assert (await session.execute("open('f', 'w').close()")).ok
    lent = tmp_path / "lent"
    lent.mkdir()
    async with Session(lent, default_timeout=60, notebook=False) as session:
        assert (await session.execute("open('f', 'w').close()")).ok
    assert calls and not [name for name, on_loop in calls if on_loop], calls
