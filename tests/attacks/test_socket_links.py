"""The host reconnects only to the sockets the kernel bound, never to what a kernel put at their paths.

The kernel can write the directory its ipc sockets live in. Here it replaces
its iopub socket file with a symbolic link to a unix socket that the test
listens on, then cuts the host's iopub connection (an oversized message),
which makes the host reconnect. The listener must never get a connection,
and the session's output must keep arriving (the reconnection reached the
real socket).
"""

from __future__ import annotations

import socket
import stat
from pathlib import Path

from kernel_agent import CellStatus, Session

CUT_AND_REDIRECT = """
import json, os
from ipykernel.connect import get_connection_file
info = json.load(open(get_connection_file()))
victim = info['ip'] + '-' + str(info['iopub_port'])
os.unlink(victim)
os.symlink({listener!r}, victim)
from IPython.display import display
display({{'text/plain': 'x' * 70_000_000}}, raw=True)  # over the host's cap: the host cuts iopub and reconnects
print(os.path.islink(victim))
"""


async def test_a_socket_replaced_by_a_link_is_never_followed(session: Session, tmp_path: Path) -> None:
    listener_path = tmp_path / "host-service.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(listener_path))
    listener.listen(8)
    listener.setblocking(False)
    try:
        connection = session._kernel.connection  # type: ignore[union-attr]
        assert connection is not None
        cell = await session.execute(CUT_AND_REDIRECT.format(listener=str(listener_path)), timeout=60)
        assert cell.status is CellStatus.OK and "output lost" in cell.stderr
        assert connection.iopub_reconnects >= 1
        # The reconnection worked: later output arrives (so the host connected somewhere real) ...
        for i in range(3):
            later = await session.execute(f"print('after {i}')")
            assert later.stdout == f"after {i}\n"
        # ... and that somewhere was the kernel's own socket, through a host-only link.
        provisioner = session._kernel.provisioner  # type: ignore[union-attr]
        assert provisioner.run_dir is not None
        links = list((provisioner.run_dir / "links").iterdir())
        assert links and all(stat.S_ISSOCK(link.lstat().st_mode) for link in links)
        try:
            accepted, _ = listener.accept()
        except BlockingIOError:
            accepted = None
        assert accepted is None, "the host connected to a socket the kernel pointed it at"
    finally:
        listener.close()
