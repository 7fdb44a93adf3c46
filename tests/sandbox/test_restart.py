"""jupyter_client's restart_kernel keeps the sandboxed kernel's endpoints, and everything the old kernel planted is
thrown away, never followed.

A restart reuses the run directory: the connection file and the socket
paths stay, so a client connected before the restart reconnects by itself
(as it would to a TCP kernel's unchanged ports). The dead kernel could write
the ``sandbox/`` directory those paths are in; the host replaces that
directory instead of reusing anything in it. The uid lease, the lent
workspace and the cgroup stay correct across the restart, and the final
shutdown still removes or gives back everything.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager

from kernel_agent.kernelspec.spec import KERNEL_NAME, SessionKernelSpecManager, kernel_spec_dict
from kernel_agent.sandbox import hostlocks
from kernel_agent.sandbox.provisioner import LINKS_DIR, SHARED_DIR, SandboxProvisioner

from ..conftest import sandbox_processes

WAIT = 90.0  # seconds: the bound on any one reply (a kernel start included), never a pause


async def _run(client: AsyncKernelClient, code: str) -> str:
    """Execute ``code`` through ``client``; its stdout (the reply must be ok)."""
    out: list[str] = []
    reply = await client.execute_interactive(code, timeout=WAIT, output_hook=lambda m: out.append(
        m["content"].get("text", "") if m["msg_type"] == "stream" else ""))
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(out)


def _provisioner(manager: AsyncKernelManager) -> SandboxProvisioner:
    provisioner = manager.provisioner
    assert isinstance(provisioner, SandboxProvisioner)
    return provisioner


Started = tuple[AsyncKernelManager, AsyncKernelClient, Path, tuple[int, int]]


def _inodes(directory: Path) -> dict[str, int]:
    return {entry.name: entry.lstat().st_ino for entry in directory.iterdir()}


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[Started]:
    """A kernel-agent kernel with a workspace (lent to the kernel's uid on a root host) and a client on it."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    owner = workspace.stat().st_uid, workspace.stat().st_gid
    manager = AsyncKernelManager(kernel_name=KERNEL_NAME,
                                 kernel_spec_manager=SessionKernelSpecManager(kernel_spec_dict(workspace=workspace)))
    await manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=WAIT)
        yield manager, client, workspace, owner
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)


async def test_a_client_connected_before_the_restart_works_after_it(
        started: Started) -> None:
    """restart_kernel(): same connection file (path and content), same socket paths, the same client answered."""
    manager, client, _, _ = started
    provisioner = _provisioner(manager)
    assert await _run(client, "state = 'first kernel'\nprint(state)") == "first kernel\n"
    run_dir, connection_file = provisioner.run_dir, Path(manager.connection_file)
    assert run_dir is not None
    info, links = json.loads(connection_file.read_text()), _inodes(run_dir / LINKS_DIR)
    old_kernel = provisioner.process

    await manager.restart_kernel()

    assert provisioner.run_dir == run_dir and provisioner.process is not old_kernel
    assert Path(manager.connection_file) == connection_file
    assert json.loads(connection_file.read_text()) == info  # same key, same ipc paths
    relinked = _inodes(run_dir / LINKS_DIR)
    assert set(relinked) == set(links)  # the same socket paths...
    assert all(relinked[name] != links[name] for name in links)  # ...now the new kernel's sockets
    assert all(stat.S_ISSOCK((run_dir / LINKS_DIR / name).lstat().st_mode) for name in relinked)
    # The client made before the restart: it reconnected by itself and talks to the fresh kernel.
    await client.wait_for_ready(timeout=WAIT)
    assert await _run(client, "print('state' in dir(), 6 * 7)") == "False 42\n"


async def test_what_the_old_kernel_planted_is_replaced_never_followed(
        started: Started, tmp_path: Path) -> None:
    """The dying kernel turns its connection file into a link to a host file and a socket path into a link to
    a host socket, and leaves a FIFO and a tree behind: the host writes through none of it, connects to none of
    it, and the restarted kernel gets an empty directory with only its own connection file and sockets."""
    manager, client, _, _ = started
    provisioner = _provisioner(manager)
    run_dir = provisioner.run_dir
    assert run_dir is not None
    victim = tmp_path / "host-file.json"
    victim.write_text("host data")
    listener_path = tmp_path / "host-service.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(listener_path))
    listener.listen(8)
    listener.setblocking(False)
    try:
        planted = await _run(client, f"""
import json, os
from ipykernel.connect import get_connection_file
path = get_connection_file()
info = json.load(open(path))
os.unlink(path)
os.symlink({str(victim)!r}, path)
iopub = info['ip'] + '-' + str(info['iopub_port'])
os.unlink(iopub)
os.symlink({str(listener_path)!r}, iopub)
folder = os.path.dirname(path)
os.mkfifo(os.path.join(folder, 'fifo'))
os.makedirs(os.path.join(folder, 'a', 'b', 'c'))
os.symlink('/', os.path.join(folder, 'a', 'root'))
print(sorted(os.listdir(folder)))
""")
        assert "'fifo'" in planted and "'a'" in planted

        await manager.restart_kernel(now=True)
        await client.wait_for_ready(timeout=WAIT)
        assert await _run(client, "print('alive')") == "alive\n"

        assert victim.read_text() == "host data" and not victim.is_symlink()
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing on the host ever connected to the kernel's link
        shared = run_dir / SHARED_DIR
        entries = {entry.name: entry.lstat() for entry in shared.iterdir()}
        assert stat.S_ISREG(entries.pop("connection.json").st_mode)
        assert entries and all(stat.S_ISSOCK(status.st_mode) for status in entries.values()), sorted(entries)
        assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(SHARED_DIR)) == [SHARED_DIR]
    finally:
        listener.close()


@pytest.mark.skipif(os.getuid() != 0, reason="uid leases and lent workspaces exist on root hosts only")
async def test_the_uid_lease_cgroup_and_lent_workspace_stay_right_across_a_restart(
        started: Started) -> None:
    """Both kernels run as the same leased uid and write the same lent workspace; the restarted kernel has a
    cgroup of its own; the final shutdown frees the uid, removes the run directory and cgroup, and gives every
    file either kernel made back to the workspace's owner."""
    manager, client, workspace, owner = started
    provisioner = _provisioner(manager)
    uid, run_dir = provisioner.sandbox_uid, provisioner.run_dir
    assert uid is not None and uid != 0 and run_dir is not None
    assert await _run(client, "import os\nopen('first.txt', 'w').write('1')\nprint(os.getuid())") == f"{uid}\n"
    cgroup_dirs = list(provisioner.cgroup.dirs) if provisioner.cgroup is not None else []

    await manager.restart_kernel(now=True)
    await client.wait_for_ready(timeout=WAIT)

    assert provisioner.sandbox_uid == uid  # the lease was kept: the first kernel's files stay writable
    code = "import os\nopen('first.txt', 'a').write('2')\nos.makedirs('second/deep')\nprint(os.getuid())"
    assert await _run(client, code) == f"{uid}\n"
    assert (workspace / "first.txt").read_text() == "12"
    assert provisioner.cgroup is not None and list(provisioner.cgroup.dirs) == cgroup_dirs
    pid = str(provisioner.process.pid) if provisioner.process is not None else ""
    for directory in cgroup_dirs:  # the same names, made afresh, holding the new sandbox
        assert pid in (directory / "cgroup.procs").read_text().split()
    assert not hostlocks.lock_is_free(run_dir.name)

    client.stop_channels()
    await manager.shutdown_kernel(now=True)
    assert not run_dir.exists() and sandbox_processes(run_dir) == []
    assert not any(directory.exists() for directory in cgroup_dirs)
    for path in [workspace, *workspace.rglob("*")]:
        assert (path.stat().st_uid, path.stat().st_gid) == owner, path
    from kernel_agent.sandbox.uids import lease_uid

    lease = lease_uid(uid, uid)  # free again: only a lease nobody holds can be taken
    lease.release()


async def test_a_jupyter_started_kernel_keeps_its_home_across_a_restart(tmp_path: Path) -> None:
    """Started like Jupyter starts it (no workspace: the launch directory read-only, a private home), the
    restarted kernel finds its home as it was; the final shutdown removes it."""
    launch_dir = tmp_path / "notebooks"
    launch_dir.mkdir()
    launch_dir.chmod(0o755)
    manager = AsyncKernelManager(kernel_name=KERNEL_NAME,
                                 kernel_spec_manager=SessionKernelSpecManager(kernel_spec_dict()))
    await manager.start_kernel(cwd=str(launch_dir))
    client: Any = manager.client()
    client.start_channels()
    run_dir = _provisioner(manager).run_dir
    try:
        await client.wait_for_ready(timeout=WAIT)
        code = "import os\nopen(os.path.join(os.environ['HOME'], 'note.txt'), 'w').write('kept')\nprint(os.getcwd())"
        assert await _run(client, code) == f"{launch_dir}\n"
        await manager.restart_kernel()
        await client.wait_for_ready(timeout=WAIT)
        code = "import os\nprint(open(os.path.join(os.environ['HOME'], 'note.txt')).read(), os.getcwd())"
        assert await _run(client, code) == f"kept {launch_dir}\n"
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)
    assert run_dir is not None and not run_dir.exists()
