"""SkillsSource: a session's way to the skills library, as the host tools ``skills.load`` and ``skills.propose``.

``Agent(tools=[..., SkillsSource(library)])`` (or ``kernel-agent run --skills``)
gives a session's kernel ``from skills import NAME`` (the kernel's import hook,
:mod:`kernel_agent.kernel.skills_import`, calls ``skills.load``) and
``skills.propose(...)``. The source keeps state per session (known by its
bridge, see :mod:`kernel_agent.tools.call_context`), so one source can serve
many sessions at once (an MCP server's clients, an experiment's runs):

- **Pins.** The first load of a skill in a session pins its version (by
  sha256) for the rest of that session: a new version stored meanwhile does
  not change under the kernel. ``pins={name: sha256}`` (or
  :meth:`SkillsSource.from_notebook`) serves given versions instead of the
  current ones. What a session loaded is in its record (each ``skills.load``
  call with its result: name, sha256, version, source), so a replay, served
  from the record, imports exactly those versions whatever the library holds.
- **Uses.** One use per (session, skill) is counted in the library, however
  often a kernel asks.
- **Proposals.** Checked in order, each refusal a
  :class:`~kernel_agent.errors.SkillRefusedError` whose message (the reason)
  the kernel gets: name and sizes; a name the library holds is a
  *replacement* (its version would become current for every later session),
  refused unless ``policy.allow_replacing`` (the current version proposed again
  is no change, not refused); it parses, defines its name, imports
  nothing the :class:`~kernel_agent.skills.checks.SkillPolicy` forbids
  (:mod:`.checks`, in a worker thread); it imports and its tests pass in a
  fresh sandboxed kernel (:mod:`.trial`); then the approver says yes. Only then
  is it stored, with its provenance. With no approver nothing is stored: a
  library later sessions import from takes code only with someone's yes.
  At most ``policy.max_proposals`` per session, one at a time, and at most
  ``max_trials`` trial kernels at once for the whole source.
- **Place.** A library inside a tree the session's sandbox can write (its
  workspace, its writable paths) is refused: a kernel could forge skills there.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from kernel_agent.errors import (
    SessionOptionError,
    SkillError,
    SkillLibraryError,
    SkillNotFoundError,
    SkillRefusedError,
)
from kernel_agent.kernel.catalog_search import CatalogEntry
from kernel_agent.skills import catalog
from kernel_agent.skills.checks import SkillPolicy, check_code, check_name, check_texts
from kernel_agent.skills.library import SkillLibrary
from kernel_agent.skills.trial import run_trial
from kernel_agent.skills.versions import (
    MAX_SOURCE_BYTES,
    MAX_TESTS_BYTES,
    Provenance,
    Skill,
    SkillVersion,
    check_description,
    check_text,
    content_hash,
    is_sha256,
)
from kernel_agent.tools.call_context import CallContext, current_call
from kernel_agent.tools.policy import Approver, CallRequest
from kernel_agent.tools.tool import Tool, tool_from_function

NAMESPACE = "skills"
PROPOSE_HINT = ("Propose a function you wrote that later sessions could reuse: "
                "skills.propose(function, 'one-line description', tests='assert ...') after `import skills` "
                "(the host checks it, runs its tests in a fresh kernel and asks for approval).")
_NO_APPROVER = ("not approved: this host approves no skill unattended (the SkillsSource has no approver; "
                "kernel-agent run takes proposals only with --approve-skills)")


@dataclass
class _SessionSkills:
    """What the source keeps for one session: its pins, the skills whose use it counted, its proposals."""

    pins: dict[str, str] = field(default_factory=dict)
    counted: set[str] = field(default_factory=set)
    proposals: int = 0
    proposing: bool = False
    place_checked: bool = False


class SkillsSource:
    """The skills library as a tool source: ``skills.load`` and ``skills.propose`` (see the module docstring).

    ``library``: a :class:`~kernel_agent.skills.library.SkillLibrary` or its
    directory (default: the user's). ``approver`` gets a
    :class:`~kernel_agent.tools.policy.CallRequest` (the propose tool, the
    proposal's name, source, description and tests; ``kind``: ``"new"``,
    ``"replacement"`` or ``"unchanged"`` (the current version again);
    ``replaces``: None, or the replaced version's ``version``, ``sha256`` and
    ``description``; the cell) and says yes or no (it may be async); None refuses every proposal.
    ``pins`` serve those versions.
    """

    namespace_descriptions: ClassVar[Mapping[str, str]] = {
        NAMESPACE: "the host's skills library: import skills with `from skills import NAME`; propose new ones "
                   "with skills.propose(function, description, tests)"}

    def __init__(self, library: SkillLibrary | str | os.PathLike[str] | None = None, *,
                 policy: SkillPolicy | None = None, approver: Approver | None = None,
                 pins: Mapping[str, str] | None = None, max_trials: int = 2) -> None:
        self.library = library if isinstance(library, SkillLibrary) else SkillLibrary(library)
        self.policy = policy or SkillPolicy()
        self.approver = approver
        self.pins = dict(pins or {})
        for name, sha256 in self.pins.items():
            if not isinstance(name, str) or not is_sha256(sha256):
                raise SkillRefusedError(f"a pin is a skill name and a full sha256 (64 hex digits): {name!r}")
        if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
            # 0 would make every proposal wait for a trial slot that never comes.
            raise SessionOptionError(f"max_trials must be a whole number >= 1, not {max_trials!r}")
        self.max_trials = max_trials
        # Per event loop: a source may outlive one (asyncio.run twice), and a semaphore is bound to its loop.
        self._trials: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = \
            weakref.WeakKeyDictionary()
        self._sessions: weakref.WeakKeyDictionary[object, _SessionSkills] = weakref.WeakKeyDictionary()
        self._host = _SessionSkills()  # calls made by the host itself, outside any session
        self._catalog: list[CatalogEntry] | None = None  # a recorded session's list (from_notebook); None: live
        # The library's skills as last read by catalog_extras, which a session's start calls in a worker thread:
        # the manifest an agent builds on the event loop every session shares is made from it, never by reading
        # the library there (a 32 MB index to parse, or a lock another process holds for up to lock_timeout).
        self._listed: list[Skill] | None = None
        self._tools = [
            tool_from_function(self._load_tool, name="load", namespace=NAMESPACE, read_only=True),
            tool_from_function(self._propose_tool, name="propose", namespace=NAMESPACE),
        ]

    @classmethod
    def from_notebook(cls, library: SkillLibrary | str | os.PathLike[str] | None,
                      notebook: str | os.PathLike[str], **options: Any) -> SkillsSource:
        """A source pinned to the versions the session recorded in ``notebook`` loaded (see :mod:`.pins`), listing
        the skills its SDK listed then (whatever the library holds now), so ``Session.resume`` and
        ``Agent.resume`` accept it as the recorded session's tools."""
        from kernel_agent.skills.pins import pins_from_notebook, recorded_catalog

        source = cls(library, pins={**pins_from_notebook(Path(notebook)), **dict(options.pop("pins", None) or {})},
                     **options)
        source._catalog = recorded_catalog(Path(notebook))
        return source

    # -- the tool source shape: nothing to start, nothing to close ----------------------------

    @property
    def started(self) -> bool:
        """Always: the library is read at each call, so any session may use the source at once."""
        return True

    @property
    def tools(self) -> list[Tool]:
        """``skills.load`` and ``skills.propose``."""
        return list(self._tools)

    async def start(self) -> SkillsSource:
        return self

    async def close(self) -> None:
        return None

    # -- the manifest and tools.search (the registry's hook) --------------------------------------

    def catalog_extras(self) -> list[CatalogEntry]:
        """The library's skills as search entries (importable, never callable as tools); a recorded list when
        made :meth:`from_notebook` (the SDK, and its hash, are then the recorded ones)."""
        if self._catalog is not None:
            with contextlib.suppress(SkillError, OSError):  # the recorded list stands whatever the library is now
                self._listed = self.library.skills()
            return list(self._catalog)
        self._listed = self.library.skills()
        return catalog.catalog_entries(self._listed)

    def manifest_extras(self, budget: int) -> str:
        """The manifest's skills section (from the skills last listed, see ``_listed``), and how to propose one."""
        skills = self._listed if self._listed is not None else self.library.skills()
        section = catalog.manifest_section(skills, max(0, budget - len(PROPOSE_HINT) - 1))
        return f"{section}\n{PROPOSE_HINT}" if section else PROPOSE_HINT

    # -- pins and uses -----------------------------------------------------------------------------

    def session_pins(self, call: CallContext | None = None) -> dict[str, str]:
        """The versions a session (default: the host's own calls) has pinned so far: name -> sha256."""
        return dict(self._state(call).pins)

    def record_end(self, session: object) -> dict[str, Any]:
        """What the session's sealed record ends with: the versions it loaded (``{"skills": {"pins": ...}}``)."""
        state = self._sessions.get(session)
        return {"skills": {"pins": dict(state.pins)}} if state is not None and state.pins else {}

    def _state(self, call: CallContext | None) -> _SessionSkills:
        if call is None:
            return self._host
        state = self._sessions.get(call.session)
        if state is None:
            state = self._sessions[call.session] = _SessionSkills()
        return state

    def check_session_place(self, facts: Mapping[str, Any]) -> None:
        """Refuse (SkillLibraryError) a library the session's sandbox could write, or one that holds such a tree.

        Called by the session as it starts (see ``SessionTools.check_places``), before its SDK and manifest
        (the library's descriptions) reach the kernel or the model; and again at a session's first call."""
        library = Path(os.path.realpath(self.library.directory))
        writable_trees = facts.get("writable", ())
        for tree in writable_trees if isinstance(writable_trees, (list, tuple)) else ():
            writable = Path(os.path.realpath(tree))
            if library.is_relative_to(writable) or writable.is_relative_to(library):
                raise SkillLibraryError(
                    f"the skills library {library} overlaps {writable}, which this session's sandbox can write: a "
                    "kernel could forge skills there; keep the library out of workspaces and writable paths")

    def _check_place(self, call: CallContext | None, state: _SessionSkills) -> None:
        """The place check, once per session (a call from the host itself has no sandbox)."""
        if call is None or state.place_checked:
            return
        self.check_session_place(call.facts)
        state.place_checked = True

    async def load(self, name: str, *, call: CallContext | None = None) -> dict[str, Any]:
        """The version of ``name`` this session uses: pinned, else current (then pinned); counts one use."""
        state = self._state(call)
        self._check_place(call, state)
        try:
            check_name(name)
        except SkillRefusedError:
            raise SkillNotFoundError(f"{str(name)[:80]!r} is not a skill name") from None
        pinned = state.pins.get(name) or self.pins.get(name)
        try:
            version = await asyncio.to_thread(self.library.get, name, pinned)
        except SkillNotFoundError:
            if pinned is None:
                raise
            raise SkillNotFoundError(f"skill {name!r} is pinned to version {pinned[:12]}, which the library no longer "
                                     "holds") from None
        first = state.pins.setdefault(name, version.sha256)
        if first != version.sha256:
            # Another load of this session pinned the name while this one read the library (a new version
            # became current meanwhile): serve the pinned one, so a session never sees two versions of a skill
            # and its recorded loads agree with its sealed pins.
            version = await asyncio.to_thread(self.library.get, name, first)
        if name not in state.counted:
            state.counted.add(name)
            await asyncio.to_thread(self.library.count_use, name, version.sha256)
        return {"name": name, "sha256": version.sha256, "version": version.version, "source": version.source}

    # -- proposals ---------------------------------------------------------------------------------

    async def propose(self, name: str, source: str, description: str, tests: str = "", *,
                      call: CallContext | None = None) -> dict[str, Any]:
        """Check, try, approve and store a skill (see the module docstring); what was stored, or the refusal."""
        state = self._state(call)
        self._check_place(call, state)
        if state.proposing:
            raise SkillRefusedError("another proposal of this session is being checked: one at a time")
        if state.proposals >= self.policy.max_proposals:
            raise SkillRefusedError(f"this session made its {self.policy.max_proposals} proposals, the limit")
        state.proposals += 1
        state.proposing = True
        try:
            check_name(name)
            check_texts(self.policy, source, description, tests)
            # And what the library's add() would refuse (bytes over its caps, text that is not UTF-8), before
            # a trial kernel is spent and the approver asked about a proposal that could never be stored.
            check_text("source", source, MAX_SOURCE_BYTES)
            check_text("tests", tests, MAX_TESTS_BYTES)
            # The library stores its cleaned line (no escapes, no bidi, one space): the approver is asked about
            # that very text, not the raw one a kernel sent (which a terminal prompt would have interpreted).
            description = check_description(description)
            # A name the library holds is a replacement: the new version would become current for every later
            # session (its code next to their host tools, its description in their prompts). Refused unless the
            # policy allows replacing, before a trial kernel is spent. The very current version is no change.
            current = await asyncio.to_thread(self._current, name)
            replaces = current if current is not None and current.sha256 != content_hash(name, source, tests) \
                else None
            if replaces is not None and not self.policy.allow_replacing:
                raise SkillRefusedError(
                    f"skill {name!r} exists (version {replaces.version}); replacing it needs SkillPolicy("
                    "allow_replacing=True) (kernel-agent run: --approve-skill-updates): propose it under a new name")
            await asyncio.to_thread(check_code, self.policy, name, source, tests)
            async with self._trials.setdefault(asyncio.get_running_loop(), asyncio.Semaphore(self.max_trials)):
                reason = await run_trial(self.policy, name, source, tests)
            if reason is not None:
                raise SkillRefusedError(f"skill {name!r} was refused: {reason}")
            arguments = {"name": name, "source": source, "description": description, "tests": tests,
                         "kind": "new" if current is None else "replacement" if replaces is not None else "unchanged",
                         "replaces": None if replaces is None else
                         {"version": replaces.version, "sha256": replaces.sha256,
                          "description": replaces.description}}
            allowed, why = await self._approve(CallRequest(self._tools[1], arguments, call.cell if call else None))
            if not allowed:
                raise SkillRefusedError(f"skill {name!r} was refused: {why}")
            facts = call.facts if call is not None else {}
            provenance = Provenance(
                session_id=_text(facts.get("session_id")), cell=call.cell if call is not None else None,
                notebook=_text(facts.get("notebook")), model=_text(facts.get("model")),
                proposed_by="kernel" if call is not None else "api")
            stored = await asyncio.to_thread(self.library.add, name, source, description, tests=tests,
                                             provenance=provenance,
                                             expect_current=current.sha256 if current is not None else None)
        finally:
            state.proposing = False
        return {"name": stored.name, "sha256": stored.sha256, "version": stored.version,
                "import": f"from skills import {stored.name}"}

    def _current(self, name: str) -> SkillVersion | None:
        """The current version of ``name`` in the library (None: it holds no such skill)."""
        try:
            return self.library.get(name)
        except SkillNotFoundError:
            return None

    async def _approve(self, request: CallRequest) -> tuple[bool, str]:
        if self.approver is None:
            return False, _NO_APPROVER
        try:
            answer = self.approver(request)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception as exc:  # noqa: BLE001 - an approver that fails approves nothing
            return False, f"not approved: the approver failed ({type(exc).__name__})"
        return (True, "") if answer is True else (False, "not approved: the approver said no")

    # -- the tools' handlers (their docstrings are what the model reads) ------------------------------

    async def _load_tool(self, name: str) -> dict[str, Any]:
        """The source of skill NAME, as `from skills import NAME` gets it (use that import instead).

        Args:
            name: the skill's name.
        """
        return await self.load(name, call=current_call())

    async def _propose_tool(self, name: str, source: str, description: str, tests: str = "") -> dict[str, Any]:
        """Propose code as a skill later sessions can import; the host checks it, tests it and asks for approval.

        The source must define NAME at its top level and hold its own imports. Refused (with the reason) when it
        does not parse, imports what the skill policy forbids, fails its tests in a fresh kernel, or is not
        approved. From a cell, `import skills; skills.propose(function, description, tests)` reads the source.

        Args:
            name: the skill's name (a plain identifier); `from skills import NAME` imports it.
            source: the module's code, defining NAME.
            description: one line saying what it does.
            tests: code run in a fresh kernel where NAME is defined (and importable): asserts, or test_* functions.
        """
        return await self.propose(name, source, description, tests, call=current_call())


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
