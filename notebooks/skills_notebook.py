"""The cells of notebooks/skills.ipynb (built and executed by notebooks/regenerate.py): a skill written in one
agent session and used in the next, with the scripted model (offline, repeatable)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

SETUP = '''\
import tempfile
from pathlib import Path

from kernel_agent import Agent, ScriptedModel, Session
from kernel_agent.skills import SkillLibrary, SkillsSource

work = Path(tempfile.mkdtemp(prefix="skills-demo-"))
library = SkillLibrary(work / "library")            # by default: ~/.local/share/kernel-agent/skills

def approver(request):                               # a person would read request.arguments here
    print(f"approving {request.arguments['name']!r}: {request.arguments['description']}")
    return True

skills = SkillsSource(library, approver=approver)'''

WRITE = """\
# What the scripted model writes, step by step (a real model writes its own).
PARSER = '''def parse_amount(text):
    \\"\\"\\"An amount written as '1.234,50 €', '$1,234.50' or '(1,234.50)' (negative), as a float.\\"\\"\\"
    import re
    negative = text.strip().startswith("(") or "-" in text
    digits = re.sub(r"[^0-9.,]", "", text)
    if "," in digits and digits.rfind(",") > digits.rfind("."):
        digits = digits.replace(".", "").replace(",", ".")
    value = float(digits.replace(",", ""))
    return -value if negative else value

print([parse_amount(t) for t in ["1.234,50 €", "$1,234.50", "(1,234.50)"]])'''
KEEP = '''import skills
tests = "assert parse_amount('1.234,50 €') == 1234.5" + chr(10) + "assert parse_amount('(2.00)') == -2.0"
final_answer(skills.propose(parse_amount, "Parse an amount in any of the usual notations", tests=tests))'''

first = await Agent(ScriptedModel([PARSER, KEEP], spec="scripted:writer"), [skills],
                    notebook=work / "session-1.ipynb").run("Parse these amounts, and keep the parser.")
first.answer"""

USE = """\
USE = '''from skills import parse_amount
final_answer(sum(parse_amount(t) for t in ['€ 10,00', '$2.50', '(0.50)']))'''
second = await Agent(ScriptedModel([USE], spec="scripted:user"), [skills],
                     notebook=work / "session-2.ipynb").run("Add up these amounts.")
system = next(turn["content"] for turn in second.conversation if turn["role"] == "system")
print(system[system.index("Skills ("):].split(chr(10) + chr(10))[0])   # what the model was told of skills
print("answer:", second.answer)"""

TABLE = """\
from IPython.display import Markdown

skill, version = library.skills()[0], library.get("parse_amount")
made = version.provenance
row = [f"`{skill.name}`", skill.version, skill.uses, f"`{version.sha256[:12]}`", f"`{made.session_id[:8]}`",
       made.cell, f"`{made.model}`"]
Markdown(chr(10).join(["| skill | version | uses | sha256 | written in session | cell | by model |",
                       "|---|---|---|---|---|---|---|", "| " + " | ".join(map(str, row)) + " |"]))"""

REFUSED = """\
WHOAMI = '''import skills
def whoami():
    import subprocess
    return subprocess.run(["id"], capture_output=True, text=True).stdout
try:
    skills.propose(whoami, "who runs this")
except Exception as exc:
    print(exc)'''
async with Session(tools=[skills], notebook=False) as session:   # a kernel of our own, driven by hand
    print((await session.execute(WHOAMI)).stdout)
print("stored skills:", [s.name for s in library.skills()])"""

REPLAY = """\
from kernel_agent.skills import pins_from_notebook
from kernel_agent.verify.replay import replay

used = pins_from_notebook(work / "session-2.ipynb")["parse_amount"]
library.add("parse_amount", "def parse_amount(text):" + chr(10) + "    return 0.0" + chr(10), "A broken rewrite")
library.remove("parse_amount", used)                 # the version session 2 used is gone from the library
report = await replay(work / "session-2.ipynb")
print("session 2 used:", used[:12], "| current now:", library.get("parse_amount").sha256[:12],
      "| replay faithful:", report.faithful)"""

SKILLS_CELLS: list[tuple[str, str]] = [
    ("markdown", """# Skills: code that outlives its session

An agent that writes a useful function can keep it: it **proposes** it as a skill, the host **checks** it
(it parses, imports nothing the policy forbids, its tests pass in a fresh sandboxed kernel), an **approver**
says yes, and the library stores it with its provenance. The next session **imports** it instead of
solving the problem again. The models here are scripted, so the notebook runs offline."""),
    ("code", SETUP),
    ("markdown", "## Session 1: the agent writes a parser for messy amounts, and keeps it"),
    ("code", WRITE),
    ("markdown", "## Session 2: a new session sees the skill in its manifest and imports it"),
    ("code", USE),
    ("code", TABLE),
    ("markdown", """## A proposal the host refuses says why

The reason comes back to the kernel as the call's error, so a model can read it and do better."""),
    ("code", REFUSED),
    ("markdown", """## Replay imports the version the session used

Session 2 pinned the version it imported, and its notebook records the load (name, sha256, source). The
skill now gets a new version and the old one is removed from the library: the replay still imports, and
reproduces, what was used."""),
    ("code", REPLAY),
]


def regenerate_skills(here: Path) -> None:
    """Build notebooks/skills.ipynb from the cells above and execute it, so its outputs are real."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source in SKILLS_CELLS:
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        notebook.cells.append(make(source))
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(here)}}).execute()
    nbformat.write(notebook, here / "skills.ipynb")
