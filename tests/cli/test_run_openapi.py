"""``kernel-agent run --openapi``: a scripted agent calls a real HTTP API on 127.0.0.1 through the SDK;
the credential comes from the host's environment and stays out of the command line, the kernel and the notebook."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest

from kernel_agent.errors import SessionOptionError
from kernel_agent.tools.openapi.options import sources_from_options
from tests.tools.openapi_fixtures.server import serve, spec

from .test_run import KERNEL_AGENT, assert_intact, environment

TOKEN = "tok-" + secrets.token_hex(16)


def test_run_calls_an_openapi_document_with_a_credential_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "petstore.json").write_text(json.dumps(spec()))
    script = tmp_path / "steps.json"
    script.write_text(json.dumps([
        {"text": "Counting.", "code": "pets = tools.pets.list_pets(limit=3)\nprint('pets:', len(pets))"},
        {"code": "final_answer(f'{len(pets)} pets')"}]))
    with serve(token=TOKEN) as api:
        run = subprocess.run(
            [str(KERNEL_AGENT), "run", "How many pets?", "--model", f"scripted:{script}", "--notebook", "run.ipynb",
             "--openapi", f"petstore.json@{api.url}/v1", "--openapi-auth", "bearerAuth=env:PETSTORE_TOKEN",
             "--openapi-header", "petstore:X-Team=platform"],
            cwd=tmp_path, env=environment(PETSTORE_TOKEN=TOKEN), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 pets" in run.stdout
    sent = [entry for entry in api.log if entry["raw_path"] == "/v1/pets"]
    assert len(sent) == 1 and sent[0]["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert sent[0]["headers"]["x-team"] == "platform"
    notebook = tmp_path / "run.ipynb"
    assert TOKEN not in notebook.read_text() and TOKEN not in run.stdout + run.stderr
    assert_intact(notebook, tmp_path)


def test_bad_openapi_options_and_documents_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"openapi": "3.1.0", "info": {"title": "t"}}))
    run = subprocess.run([str(KERNEL_AGENT), "run", "x", "--model", "scripted:none.json", "--openapi", "bad.json"],
                         cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert "/paths: the document has no paths object" in run.stderr


def test_option_parsing(tmp_path: Path) -> None:
    for name in ("one", "two"):
        (tmp_path / f"{name}.json").write_text(json.dumps(spec()))
    one, two = str(tmp_path / "one.json"), str(tmp_path / "two.json")
    sources = sources_from_options([f"{one}@http://127.0.0.1:9/a", f"{two}@https://example.com/b"],
                                   ["two:X-A=env:A"], ["one:bearerAuth=literal"], environ={"A": "from-env"})
    assert [s.base_url for s in sources] == ["http://127.0.0.1:9/a", "https://example.com/b"]
    with pytest.raises(SessionOptionError, match="say which document"):
        sources_from_options([f"{one}@http://x", f"{two}@http://y"], ["X-A=1"])
    with pytest.raises(SessionOptionError, match="'NOPE' is not set"):
        sources_from_options([f"{one}@http://x"], [], ["bearerAuth=env:NOPE"], environ={})
    with pytest.raises(SessionOptionError, match="names the document 'three'"):
        sources_from_options([f"{one}@http://x"], ["three:X=1"])
    with pytest.raises(SessionOptionError) as caught:
        sources_from_options([f"{one}@http://x"], ["secret-without-equals"])
    assert "expects [DOCUMENT:]NAME=VALUE" in str(caught.value)
    # Read once per process: a rewritten document (a kernel could reach one in a workspace) changes nothing.
    three = tmp_path / "three.json"
    three.write_text(json.dumps({**spec(), "servers": [{"url": "https://api.example.com/v1"}]}))
    assert sources_from_options([str(three)])[0].base_url == "https://api.example.com/v1"
    three.write_text(json.dumps({**spec(), "servers": [{"url": "https://evil.example"}]}))
    assert sources_from_options([str(three)])[0].base_url == "https://api.example.com/v1"
    at_in_path = tmp_path / "a@b.json"
    at_in_path.write_text(json.dumps(spec()))
    assert sources_from_options([f"{at_in_path}@http://h/v1"])[0].base_url == "http://h/v1"


def test_sdk_prints_what_a_model_sees_of_a_document(tmp_path: Path) -> None:
    (tmp_path / "petstore.json").write_text(json.dumps(spec()))
    shown = subprocess.run([str(KERNEL_AGENT), "sdk", "--openapi", "petstore.json@http://127.0.0.1:9/v1",
                            "--openapi-auth", "key=env:PETSTORE_KEY"], cwd=tmp_path,
                           env=environment(PETSTORE_KEY=TOKEN), capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "tools.pets: Everything about your pets." in shown.stdout
    assert "tools.pets.list_pets(limit=2, kind=None): List the pets. [read-only]" in shown.stdout
    assert "tools.misc.keyed(): HTTP: GET /keyed [read-only]" in shown.stdout, "the host fills the API key"
    assert TOKEN not in shown.stdout
