"""No network: no egress, no DNS, no host loopback or unix-socket services.

Attacks run from inside a real sandboxed kernel; the host is checked afterwards (see support.py)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import psutil
import pytest

from kernel_agent import Session

from .support import (
    TAG,
    HostBaseline,
    assert_host_healthy,
    assert_session_healthy,
    attack,
    module_loop,
    reported,
)

# --------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port"),
    [("1.1.1.1", 443), ("8.8.8.8", 53), ("169.254.169.254", 80)],
    ids=["external-ip", "public-dns-server", "cloud-metadata"],
)
@module_loop
async def test_no_network_egress(shared: Session, host_baseline: HostBaseline, host: str, port: int) -> None:
    """Attack: TCP and UDP to an external address (and the cloud metadata service). Both must fail: no route."""
    outcome = await attack(shared, """
        import socket
        def tcp():
            with socket.create_connection((P["host"], P["port"]), timeout=3):
                return True
        def udp():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(2)
                s.sendto(b"\\x00" * 12, (P["host"], P["port"]))
                return s.recvfrom(512)[0].hex()
        report(tcp=attempt(tcp), udp=attempt(udp), interfaces=[name for _, name in socket.if_nameindex()])
    """, host=host, port=port)
    data = reported(outcome)
    assert not data["tcp"]["ok"] and not data["udp"]["ok"], data
    assert data["interfaces"] == ["lo"]
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_no_dns_resolution(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: resolve public names (getaddrinfo, and the host's resolver config). Resolution must fail."""
    outcome = await attack(shared, """
        import socket, subprocess
        names = {n: attempt(socket.getaddrinfo, n, 443) for n in ("example.com", "pypi.org", "metadata.google.internal")}
        report(names=names, resolv_conf=os.path.exists("/etc/resolv.conf"),
               getent=subprocess.run(["getent", "hosts", "example.com"], capture_output=True).returncode)
    """)
    data = reported(outcome)
    assert not any(r["ok"] for r in data["names"].values()), data["names"]
    assert data["getent"] != 0 and not data["resolv_conf"]
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_host_loopback_tcp_server_receives_nothing(shared: Session, host_baseline: HostBaseline) -> None:
    """Attack: connect to a TCP server the host runs on 127.0.0.1 (and on every host address). It gets no connection."""
    addresses = sorted({a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                        if a.family == socket.AF_INET})
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("0.0.0.0", 0))
        server.listen(16)
        server.setblocking(False)
        port = server.getsockname()[1]
        outcome = await attack(shared, """
            import socket
            results = {}
            for address in P["addresses"] + ["localhost", "::1"]:
                def connect():
                    with socket.create_connection((address, P["port"]), timeout=2) as s:
                        s.sendall(b"hello from the sandbox")
                        return True
                results[address] = attempt(connect)
            report(results=results)
        """, addresses=addresses, port=port)
        await asyncio.sleep(0.3)
        with pytest.raises(BlockingIOError):
            connection, peer = server.accept()
            connection.close()
            raise AssertionError(f"the host server accepted a connection from {peer}")
    data = reported(outcome)
    assert "127.0.0.1" in data["results"]
    assert not any(r["ok"] for r in data["results"].values()), data["results"]
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)


@module_loop
async def test_host_unix_sockets_receive_nothing(
    shared: Session, tmp_path: Path, host_baseline: HostBaseline
) -> None:
    """Attack: connect to a filesystem and an abstract unix socket the host listens on. Neither accepts anything."""
    path = tmp_path / "host.sock"
    abstract = f"\0kernel-agent-attack-{TAG}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as fs_server, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as abstract_server:
        for server, address in ((fs_server, str(path)), (abstract_server, abstract)):
            server.bind(address)
            server.listen(4)
            server.setblocking(False)
        outcome = await attack(shared, """
            import socket
            def connect(address):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(2)
                    s.connect(address)
                    s.sendall(b"hello")
                    return True
            report(fs=attempt(connect, P["path"]), abstract=attempt(connect, P["abstract"]),
                   via_proc=attempt(connect, "/proc/1/root" + P["path"]))
        """, path=str(path), abstract=abstract)
        await asyncio.sleep(0.2)
        for server in (fs_server, abstract_server):
            with pytest.raises(BlockingIOError):
                server.accept()[0].close()
                raise AssertionError("a host unix socket accepted a connection from the sandbox")
    data = reported(outcome)
    assert not data["fs"]["ok"] and not data["abstract"]["ok"] and not data["via_proc"]["ok"], data
    assert_host_healthy(host_baseline)
    await assert_session_healthy(shared)
