"""Reading host secrets: environment, processes, files outside the workspace, the user database, other sessions.

Attacks run from inside a real sandboxed kernel; the host is checked afterwards (see support.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kernel_agent import Session

from .support import (
    ROOT_SECRET_TEXT,
    SECRET_ENV_NAME,
    SECRET_ENV_VALUE,
    SECRET_FILE_TEXT,
    HostBaseline,
    HostSecrets,
    assert_host_healthy,
    assert_session_healthy,
    attack,
    module_loop,
    provisioner_of,
    reported,
)

# --------------------------------------------------------------------------
# Reading host secrets
# --------------------------------------------------------------------------


@module_loop
async def test_host_environment_is_not_visible(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: look for the host's API key in os.environ, env(1) and every /proc/*/environ. It must not appear."""
    assert os.environ.get(SECRET_ENV_NAME) == SECRET_ENV_VALUE  # the host really has the secret
    outcome = await attack(shared, """
        import glob, subprocess
        # The attacker does not know the secret: it dumps every environment it can reach.
        names = set(os.environ)
        print(dict(os.environ))
        paths = {"/proc/self/environ", "/proc/1/environ", *glob.glob("/proc/[0-9]*/environ"),
                 *glob.glob("/proc/[0-9]*/task/*/environ")}
        dumped = []
        for path in sorted(paths):
            try:
                data = open(path, "rb").read()
            except OSError:
                continue
            dumped.append(path)
            print(path, data)
            names.update(entry.split(b"=", 1)[0].decode(errors="replace") for entry in data.split(b"\\0") if entry)
        env_out = subprocess.run(["env"], capture_output=True, text=True).stdout
        print(env_out)
        names.update(line.split("=", 1)[0] for line in env_out.splitlines())
        report(names=sorted(names), dumped=dumped)
    """)
    data = reported(outcome)
    # The kernel's own environment is readable; the sandbox init's (pid 1) is readable
    # only when it runs as the kernel's user (on a root host it stays root and is not).
    assert "/proc/self/environ" in data["dumped"]
    assert "/proc/1/environ" in data["dumped"] or os.getuid() == 0
    assert SECRET_ENV_NAME not in data["names"]
    assert SECRET_ENV_VALUE not in outcome.text
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_host_processes_are_not_visible(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: enumerate /proc and read the host test process's environ, root and cwd. Only sandbox processes show."""
    host_pids = [os.getpid(), os.getppid()]
    outcome = await attack(shared, """
        visible = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    visible[name] = read_text(f"/proc/{name}/cmdline").replace("\\0", " ")[:300]
                except OSError:
                    visible[name] = None
        probes = {}
        for pid in P["host_pids"]:
            for leaf in ("environ", "cmdline", "status", "mem"):
                probes[f"{pid}/{leaf}"] = attempt(lambda: len(open(f"/proc/{pid}/{leaf}", "rb").read(4096)))["ok"]
            for leaf in ("root", "cwd", "fd"):
                probes[f"{pid}/{leaf}"] = attempt(os.listdir, f"/proc/{pid}/{leaf}")["ok"]
        report(visible=visible, probes=probes)
    """, host_pids=host_pids)
    data = reported(outcome)
    assert not any(data["probes"].values()), data["probes"]
    assert all(str(pid) not in data["visible"] for pid in host_pids if pid > 1000)
    for cmdline in data["visible"].values():  # only bwrap's init, the kernel (and zombies, with no cmdline)
        assert not cmdline or "bwrap" in cmdline.split()[0] or "kernel_agent.kernel" in cmdline, cmdline
    assert len(data["visible"]) < 20  # the sandbox's own few processes, not the host's
    assert SECRET_ENV_VALUE not in outcome.text
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@pytest.mark.parametrize("target", ["outside-workspace", "root-home", "etc-shadow"])
@module_loop
async def test_host_files_outside_the_workspace_are_unreadable(
    shared: Session, host_secrets: HostSecrets, host_baseline: HostBaseline, target: str
) -> None:
    """Attack: read a host secret directly, via /proc/*/root, and with cat(1). Nothing of it may come back."""
    if target == "outside-workspace":
        path, needle = host_secrets.secret_file, SECRET_FILE_TEXT
    elif target == "root-home":
        if host_secrets.root_secret is None:
            pytest.skip("/root is not writable for the test user")
        path, needle = host_secrets.root_secret, ROOT_SECRET_TEXT
    else:
        shadow = Path("/etc/shadow")
        if not shadow.is_file() or not shadow.read_text().strip():
            pytest.skip("no /etc/shadow on this host")
        path, needle = shadow, shadow.read_text().splitlines()[0]
    outcome = await attack(shared, """
        import subprocess
        path = P["path"]
        got = []
        for candidate in (path, "/proc/self/root" + path, "/proc/1/root" + path, "/proc/2/root" + path,
                          "/proc/1/cwd/" + os.path.relpath(path, "/")):
            r = attempt(read_text, candidate)
            if r["ok"]:
                got.append(candidate)
                print(r["value"])
        cat = subprocess.run(["cat", path], capture_output=True, text=True)
        if cat.returncode == 0:
            got.append("cat")
            print(cat.stdout)
        report(got=got, stat=attempt(lambda: os.stat(path).st_size))
    """, path=str(path))
    data = reported(outcome)
    assert data["got"] == [] and not data["stat"]["ok"]
    assert needle not in outcome.text
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_host_user_database_is_not_exposed(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: read /etc/passwd, /etc/group and getent. Only the synthetic 'agent' entry is visible, no host user."""
    outcome = await attack(shared, """
        import pwd, grp, subprocess
        print(read_text("/etc/passwd"), read_text("/etc/group"))
        print(subprocess.run(["getent", "passwd"], capture_output=True, text=True).stdout)
        report(users=[p.pw_name for p in pwd.getpwall()], groups=[g.gr_name for g in grp.getgrall()])
    """)
    data = reported(outcome)
    assert data["users"] == ["agent"] and data["groups"] == ["agent"]
    host_lines = [line for line in Path("/etc/passwd").read_text().splitlines() if line.strip()]
    assert not [line for line in host_lines if line in outcome.text]
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_other_sessions_run_dir_and_key_are_unreachable(
    shared: Session, tmp_path: Path, host_baseline: HostBaseline
) -> None:
    """Attack: session A hunts for session B's run dir, connection file, key, sockets and workspace. B is untouched."""
    workspace_b = tmp_path / "workspace-b"
    workspace_b.mkdir()
    sentinel_b = workspace_b / "b-data.txt"
    sentinel_b.write_text("belongs to session B")
    async with Session(workspace_b, default_timeout=60) as other:
        await other.execute("b_state = 'untouched'")
        run_dir_b = provisioner_of(other).run_dir
        assert run_dir_b is not None
        connection_file = run_dir_b / "sandbox" / "connection.json"
        info = json.loads(connection_file.read_text())
        key_b = info["key"]
        assert len(key_b) >= 16
        connection_before = connection_file.read_bytes()
        outcome = await attack(shared, """
            import socket
            found = {}
            roots = ["/tmp", "/root", "/etc", "/dev", "/home", "/run", "/var", "/work"]
            roots += [f"/{e}" for e in os.listdir("/") if f"/{e}" not in roots and e not in ("proc", "usr", "sys")]
            for root in roots:
                for directory, _, files in os.walk(root):
                    if "site-packages" in directory or "/.pyenv/" in directory:
                        continue
                    for name in files:
                        if name.endswith(".json") or name.startswith("kernel-"):
                            path = os.path.join(directory, name)
                            r = attempt(read_text, path, 65536)
                            if r["ok"] and "signature_scheme" in r["value"]:  # a connection file: exfiltrate it
                                found[path] = r["value"]
                                print(path, r["value"])
            direct = {
                "connection_file": attempt(read_text, P["connection_file"]),
                "run_dir": attempt(os.listdir, P["run_dir"]),
                "workspace_b": attempt(os.listdir, P["workspace_b"]),
                "write_workspace_b": attempt(write_text, P["workspace_b"] + "/from-a.txt", "pwned"),
            }
            sockets = {}
            for port in P["ports"]:
                path = f"{P['ip']}-{port}"
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sockets[path] = attempt(s.connect, path)
                s.close()
            report(found=sorted(found), direct=direct, sockets=sockets)
        """, connection_file=str(connection_file), run_dir=str(run_dir_b), workspace_b=str(workspace_b),
            ip=info["ip"], ports=[info[k] for k in ("shell_port", "iopub_port", "control_port", "hb_port")])
        data = reported(outcome)
        assert not any(r["ok"] for r in data["direct"].values()), data["direct"]
        assert not any(r["ok"] for r in data["sockets"].values()), data["sockets"]
        assert not any(str(run_dir_b) in path for path in data["found"])
        assert key_b not in outcome.text
        assert connection_file.read_bytes() == connection_before
        assert not (workspace_b / "from-a.txt").exists()
        assert sentinel_b.read_text() == "belongs to session B"
        assert (await other.execute("b_state")).result == "'untouched'"
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)
