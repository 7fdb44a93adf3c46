"""``kernel-agent run --skills [DIR]`` as a real subprocess, with a scripted model: one run keeps a skill, the next
imports it; without ``--approve-skills`` a proposal is refused, saying how to allow it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kernel_agent.skills import SkillLibrary

KERNEL_AGENT = Path(sys.executable).parent / "kernel-agent"
WRITE = '''\
# %%
import skills
def shout(text):
    """The text in capitals, with an exclamation mark."""
    return text.upper() + "!"
try:
    print(skills.propose(shout, "shout a text", tests="from skills import shout\\nassert shout('a') == 'A!'"))
except Exception as exc:
    print("refused:", exc)
# %% [markdown]
# done
'''
USE = '''\
# %%
from skills import shout
final_answer(shout("kept"))
'''


def run(tmp_path: Path, script: str, *options: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"script-{len(list(tmp_path.glob('script-*')))}.py"
    path.write_text(script)
    return subprocess.run([str(KERNEL_AGENT), "run", "a task", "--model", f"scripted:{path}", "--json", "--quiet",
                           *options], cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_run_keeps_a_skill_with_approval_and_the_next_run_imports_it(tmp_path: Path) -> None:
    library = tmp_path / "library"
    refused = run(tmp_path, WRITE, "--skills", str(library))
    assert refused.returncode == 0, refused.stderr
    assert len(SkillLibrary(library)) == 0
    kept = run(tmp_path, WRITE, "--skills", str(library), "--approve-skills")
    assert kept.returncode == 0, kept.stderr
    assert SkillLibrary(library).get("shout").provenance.model == f"scripted:{tmp_path / 'script-1.py'}"
    used = run(tmp_path, USE, "--skills", str(library))
    assert used.returncode == 0, used.stderr
    assert json.loads(used.stdout)["answer"] == "KEPT!"
    assert SkillLibrary(library).skills()[0].uses == 1
    notebook = json.loads(refused.stdout)["notebook"]
    outputs = [o.get("text", "") for cell in json.loads(Path(notebook).read_text())["cells"]
               for o in cell.get("outputs", [])]
    assert any("refused:" in text and "--approve-skills" in text for text in outputs), outputs


def test_approve_skills_needs_skills(tmp_path: Path) -> None:
    result = run(tmp_path, USE, "--approve-skills")
    assert result.returncode != 0 and "--approve-skills goes with --skills" in result.stderr


async def test_mcp_skills_gives_each_client_session_the_library(tmp_path: Path) -> None:
    from ..mcp_server.support import run as run_python
    from ..mcp_server.support import stdio_session
    from ..mcp_server.support import text as result_text

    library = SkillLibrary(tmp_path / "library")
    library.add("shout", 'def shout(text):\n    return text.upper() + "!"\n', "shout a text")
    async with stdio_session(tmp_path / "records", "--skills", str(library.directory)) as client:
        run_tool = next(tool for tool in (await client.list_tools()).tools if tool.name == "run_python")
        assert "from skills import shout" in (run_tool.description or "")  # the manifest lists the skill
        found = result_text(await client.call_tool("search_tools", {"query": "shout text"}))
        assert "from skills import shout" in found, found  # and search_tools finds it, as tools.search does
        used = await run_python(client, "from skills import shout\nprint(shout('mcp'))")
        assert result_text(used) == "MCP!", result_text(used)
        refused = await run_python(client, "import skills\ndef whisper(text):\n    return text.lower()\n"
                                           "skills.propose(whisper, 'whisper a text')")
        assert refused.is_error and "--approve-skills" in result_text(refused)
    assert library.skills()[0].uses == 1 and len(library) == 1
