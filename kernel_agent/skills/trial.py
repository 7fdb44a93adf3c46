"""A proposed skill's trial: its source imported and its tests run in a fresh sandboxed kernel.

The kernel is a new :class:`~kernel_agent.session.session.Session` of its
own: no tools, the skill policy's sandbox (default: strict, no network), not
recorded, bounded in time and output, closed after. The skill imports there
as ``skills.NAME`` (``from skills import NAME``), as it will in later sessions,
and the tests find NAME already defined; they are plain code (``assert``
lines) and/or ``test_*`` functions, each called. Passing means the cell ended without an error.
"""

from __future__ import annotations

from kernel_agent.session.session import Session
from kernel_agent.skills.checks import SkillPolicy

_REASON_CHARS = 600

# Run in the trial kernel: the skill as module skills.NAME, then its tests.
_TRIAL = '''\
import linecache as _linecache, sys as _sys, types as _types
import skills as _skills
_module = _types.ModuleType("skills." + {name!r})
_module.__file__ = "<skill " + {name!r} + " (proposed)>"
_linecache.cache[_module.__file__] = (0, None, {source!r}.splitlines(True), _module.__file__)
_sys.modules[_module.__name__] = _module
exec(compile({source!r}, _module.__file__, "exec"), _module.__dict__)
setattr(_skills, {name!r}, _module)
_namespace = {{"__name__": "skill_tests", {name!r}: getattr(_module, {name!r})}}
_linecache.cache["<tests>"] = (0, None, {tests!r}.splitlines(True), "<tests>")
exec(compile({tests!r}, "<tests>", "exec"), _namespace)
_tests = [_value for _key, _value in list(_namespace.items()) if _key.startswith("test") and callable(_value)]
for _test in _tests:
    _test()
print(f"imported; {{len(_tests)}} test function(s) passed")
'''


def _clean(text: str) -> str:
    """One bounded line of printable text (it goes back to the kernel and into records)."""
    line = "".join(c if c.isprintable() else " " for c in text).strip()
    return line if len(line) <= _REASON_CHARS else line[:_REASON_CHARS] + "..."


async def run_trial(policy: SkillPolicy, name: str, source: str, tests: str) -> str | None:
    """Import the skill and run its tests in a fresh sandboxed kernel: None when they pass, else why not."""
    code = _TRIAL.format(name=name, source=source, tests=tests)
    async with Session(policy=policy.sandbox, notebook=False, default_timeout=policy.test_timeout,
                       max_output_bytes=policy.test_output_bytes, interrupt_grace=2.0) as session:
        result = await session.execute(code)
    if result.timed_out:
        return f"its tests did not finish within {policy.test_timeout:g} s"
    if result.error is not None:
        where = "its tests failed" if result.error.ename != "SyntaxError" else "it does not compile"
        return f"{where}: {_clean(result.error.ename)}: {_clean(result.error.evalue)}"
    if result.status.value != "ok":
        return f"its trial kernel ended the cell as {result.status.value!r} (out of memory?)"
    return None
