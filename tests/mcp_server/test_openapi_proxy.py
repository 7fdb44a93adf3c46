"""``kernel-agent mcp --openapi``: an HTTP API's operations as SDK functions for an MCP client's code, the
requests made by the host with a credential the kernel, the client and the recording never see."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from tests.mcp_server.support import notebooks, run, stdio_session, text
from tests.tools.openapi_fixtures.server import serve, spec

TOKEN = secrets.token_urlsafe(16)


async def test_an_mcp_client_calls_an_openapi_operation_through_its_code(tmp_path: Path) -> None:
    document = tmp_path / "petstore.json"
    document.write_text(json.dumps(spec()))
    records = tmp_path / "records"
    with serve(token=TOKEN) as api:
        async with stdio_session(records, "--openapi", f"{document}@{api.url}/v1", "--openapi-auth",
                                 "bearerAuth=env:PETSTORE_TOKEN", env={"PETSTORE_TOKEN": TOKEN}) as client:
            found = text(await client.call_tool("search_tools", {"query": "list pets"}))
            assert found.startswith("tools.pets.list_pets")
            counted = await run(client, "pets = tools.pets.list_pets(limit=3)\nlen(pets)")
            assert text(counted) == "Out[1]: 3"
            leaked = await run(client, "import os\nsorted(k for k in os.environ if 'PETSTORE' in k)")
            assert text(leaked) == "Out[2]: []"
    sent = [entry for entry in api.log if entry["raw_path"] == "/v1/pets"]
    assert len(sent) == 1 and sent[0]["headers"]["authorization"] == f"Bearer {TOKEN}"
    [notebook] = notebooks(records)
    assert TOKEN not in notebook.read_text()
