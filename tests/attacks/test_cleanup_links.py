"""Symlink tricks against the host's cleanup of run directories and workspaces.

Attacks run from inside a real sandboxed kernel; the host is checked afterwards (see support.py)."""

from __future__ import annotations

from pathlib import Path

from kernel_agent import Session

from .support import (
    SECRET_FILE_TEXT,
    HostBaseline,
    assert_host_healthy,
    assert_session_healthy,
    attack,
    fingerprint,
    provisioner_of,
    reported,
)

# --------------------------------------------------------------------------
# Symlink tricks against the host's cleanup
# --------------------------------------------------------------------------


def _victims(root: Path) -> tuple[Path, Path, dict[Path, tuple[int, int, int, int, str] | None]]:
    """A host file and a host directory (with files) that symlinks will point at, and their fingerprints."""
    victim_dir = root / "victim-dir"
    (victim_dir / "nested").mkdir(parents=True)
    (victim_dir / "data.txt").write_text("victim data")
    (victim_dir / "nested" / "deep.txt").write_text("deep victim data")
    victim_file = root / "victim-secret.txt"
    victim_file.write_text(SECRET_FILE_TEXT)
    watched = [victim_file, victim_dir / "data.txt", victim_dir / "nested" / "deep.txt", Path("/etc/shadow")]
    return victim_file, victim_dir, {p: fingerprint(p) for p in watched}


SYMLINK_ATTACK = """
    targets = {"file": P["victim_file"], "dir": P["victim_dir"], "shadow": "/etc/shadow"}
    created, resolves = [], {}
    for where in P["dirs"]:
        for name, target in targets.items():
            link = os.path.join(where, f"evil-{name}")
            os.symlink(target, link)
            created.append(link)
            resolves[link] = os.path.exists(link)
        os.makedirs(os.path.join(where, "sub"), exist_ok=True)
        os.symlink(P["victim_dir"], os.path.join(where, "sub", "evil-dir"))
    if P.get("connection_file"):
        # Swap the connection file and the ipc socket paths for links into the host.
        for path in [P["connection_file"], *P["sockets"]]:
            tmp = path + ".swap"
            os.symlink(P["victim_file"] if path == P["connection_file"] else P["victim_dir"], tmp)
            os.replace(tmp, path)
    report(created=created, resolves=resolves)
"""


async def test_symlinks_in_the_run_dir_do_not_redirect_cleanup(tmp_path: Path, host_baseline: HostBaseline) -> None:
    """Attack: links in the run dir (and a swapped connection file/sockets) to host files. Close leaves them intact."""
    victim_file, victim_dir, before = _victims(tmp_path)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    async with Session(workspace, default_timeout=60) as session:
        run_dir = provisioner_of(session).run_dir
        assert run_dir is not None
        sandbox_dir = run_dir / "sandbox"
        sockets = [str(p) for p in sandbox_dir.iterdir() if p.is_socket()]
        outcome = await attack(session, SYMLINK_ATTACK, victim_file=str(victim_file), victim_dir=str(victim_dir),
                               dirs=[str(sandbox_dir)], connection_file=str(sandbox_dir / "connection.json"),
                               sockets=sockets)
        data = reported(outcome)
        assert len(data["created"]) == 3
        assert not any(data["resolves"].values()), "a link to a host path resolved inside the sandbox"
        await assert_session_healthy(session)
    assert not run_dir.exists()
    assert {p: fingerprint(p) for p in before} == before
    assert sorted(p.name for p in victim_dir.rglob("*")) == ["data.txt", "deep.txt", "nested"]
    assert SECRET_FILE_TEXT not in outcome.text
    assert_host_healthy(host_baseline)


async def test_symlinks_in_an_owned_workspace_do_not_redirect_its_removal(
    tmp_path: Path, host_baseline: HostBaseline
) -> None:
    """Attack: links in a session-owned workspace to host files and dirs. Removing the workspace spares the targets."""
    victim_file, victim_dir, before = _victims(tmp_path)
    async with Session(default_timeout=60) as session:
        workspace = session.workspace
        outcome = await attack(session, SYMLINK_ATTACK, victim_file=str(victim_file), victim_dir=str(victim_dir),
                               dirs=[str(workspace)])
        data = reported(outcome)
        assert len(data["created"]) == 3
        assert not any(data["resolves"].values()), "a link to a host path resolved inside the sandbox"
        assert (workspace / "evil-dir").is_symlink()  # the links really exist on the host side
        await assert_session_healthy(session)
    assert not workspace.exists()
    assert {p: fingerprint(p) for p in before} == before
    assert sorted(p.name for p in victim_dir.rglob("*")) == ["data.txt", "deep.txt", "nested"]
    assert_host_healthy(host_baseline)
