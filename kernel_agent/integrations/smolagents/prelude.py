"""The executor's own cells: smolagents' names for the session's tools, and the variables the agent sends.

They are ordinary recorded cells, generated here from the tool registry's identifiers (never from a
tool's own text), so a replay of the notebook defines the same names and receives the same variables.
"""

from __future__ import annotations

from kernel_agent.integrations.smolagents.tools import INTERNAL_NAMESPACE, SDK_GLOBALS
from kernel_agent.tools.registry import ToolRegistry

#: What a step that called final_answer() raises to end there (smolagents' remote executors use the name).
FINAL_ANSWER_EXCEPTION = "FinalAnswerException"
#: Globals of the kernel an agent's variable must not replace.
KERNEL_GLOBALS = SDK_GLOBALS | {"final_answer"}

def variables_cell(registry: ToolRegistry) -> str:
    """The cell that fetches the variables the agent sent and puts them in the namespace.

    The SDK module is looked up in sys.modules rather than through ``tools``, which the agent's code may
    have rebound by then.
    """
    fetch = registry.lookup(f"{INTERNAL_NAMESPACE}.variables")
    module = f"kernel_agent_tools.{registry.namespace_of(fetch)}"
    return ("# kernel-agent: the variables the smolagents agent sent (additional_args, state), through the bridge\n"
            f'globals().update(__import__("sys").modules[{module!r}].{registry.identifier(fetch)}())\n')


def names_cell(registry: ToolRegistry, names: list[str]) -> str:
    """The cell that binds each tool to its smolagents name and makes ``final_answer`` end the step.

    ``names`` are the agent's tool names (checked identifiers, see ``tools.global_name``); each was
    registered under that name, so the registry knows its path in the SDK.
    """
    bindings = "".join(f"    {name!s} = {registry.path(registry.lookup(name))},\n" for name in names)
    final = registry.path(registry.lookup("final_answer"))
    return (
        "# kernel-agent: the smolagents agent's tools under their own names (each runs on the host)\n"
        "def _kernel_agent_smolagents_names():\n"
        "    import functools\n\n"
        f"    class {FINAL_ANSWER_EXCEPTION}(BaseException):\n"
        '        """final_answer() was called: the step ends here, as in smolagents."""\n\n'
        f"    answer = {final}\n\n"
        "    @functools.wraps(answer)\n"
        "    def final_answer(*args, **kwargs):\n"
        "        answer(*args, **kwargs)\n"
        f'        raise {FINAL_ANSWER_EXCEPTION}("final_answer() was called: this step ends here")\n\n'
        f"    return dict(final_answer=final_answer,\n{bindings}    )\n\n\n"
        "globals().update(_kernel_agent_smolagents_names())\n"
        "del _kernel_agent_smolagents_names\n"
    )
