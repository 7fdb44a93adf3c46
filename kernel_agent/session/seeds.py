"""The session's seed: chosen (or given), recorded in the header, and given to every kernel the session starts.

A session seeds ``random`` and NumPy's global generator (see
:mod:`kernel_agent.kernel.seeds`, which seeds NumPy only when it is first
imported) with one value. The value goes into the recording's header, so
the hash chain covers it, and replay and resume seed their kernels with the
recorded value: a cell that draws random numbers draws the same ones again.
The header of a recording is hostile input like the rest of it: a recorded
seed is used only if it is an int in range.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from kernel_agent.errors import KernelStartError, SessionOptionError, UnusableRecordError
from kernel_agent.protocol.names import SEED_MAX
from kernel_agent.runtime.execute import run_silently
from kernel_agent.runtime.kernel import Kernel

#: Where the seed lives in the recording's header: ``{"value": N, "generators": [...]}``.
HEADER_KEY = "seed"
#: What the seed seeds (recorded with it, so a reader knows what is reproducible).
GENERATORS = ("random", "numpy.random (the global generator, seeded when NumPy is first imported)")


def session_seed(seed: int | None) -> int:
    """The seed a session uses: ``seed`` (checked), or a fresh random one (recorded like a given one)."""
    if seed is None:
        return secrets.randbits(32)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise SessionOptionError(f"seed must be an int from 0 to {SEED_MAX:,} (or None for a fresh one), "
                                 f"got {seed!r}")
    return seed


def header_entry(seed: int) -> dict[str, Any]:
    """What the recording's header says about the seed."""
    return {HEADER_KEY: {"value": seed, "generators": list(GENERATORS)}}


def recorded_seed(header: dict[str, Any], notebook: Path) -> int | None:
    """The seed a recording's header holds (None: it records none); UnusableRecordError if it is not a seed.

    Only an int from 0 to SEED_MAX is taken: the value is formatted into
    code the kernel runs, so nothing else may pass.
    """
    if HEADER_KEY not in header:
        return None
    entry = header[HEADER_KEY]
    value = entry.get("value") if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        shown = repr(value)[:80] if isinstance(entry, dict) else f"a {type(entry).__name__}"
        raise UnusableRecordError(f"{notebook}: the session header's {HEADER_KEY}.value must be an int from 0 to "
                                  f"{SEED_MAX:,}, got {shown}")
    return value


async def seed_kernel(kernel: Kernel, seed: int, timeout: float) -> None:
    """Seed a freshly started kernel's generators (a silent cell, before any cell of the session runs)."""
    # int() again: only an int's own repr is ever formatted into the code.
    code = ("from kernel_agent.kernel.seeds import seed_session as _kernel_agent_seed\n"
            f"_kernel_agent_seed({int(seed)})\n"
            "del _kernel_agent_seed")
    run = await run_silently(kernel, code, timeout)
    if not run.ok:
        detail = run.content.get("evalue") or f"the kernel {'died' if run.outcome == 'died' else 'did not answer'}"
        raise KernelStartError(f"the kernel's random generators could not be seeded: {detail}")
