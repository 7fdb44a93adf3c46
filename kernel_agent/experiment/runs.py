"""One run of an experiment: a task, a configuration, a repeat -> one table row.

The run's session comes from the experiment's warm pool, is recorded to its
own notebook under the experiment's directory (out of every sandbox's
reach), gets the task's input files in its workspace before the model's
first step (through descriptors: the workspace is the kernel's), and its
model is asked through the reply cache. Whatever goes wrong outside the
agent (a kernel that does not start, a model factory or checker that
raises) becomes the row's ``error`` or ``checker_error``, never an exception:
one bad run does not end the experiment. Only cancellation propagates,
after the session is closed and its notebook sealed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import math
import os
import reprlib
import stat
import threading
import time
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

from kernel_agent import safe_fs
from kernel_agent.agent.loop import Agent
from kernel_agent.agent.result import AgentResult
from kernel_agent.experiment.cache import CachedModel, ReplyCache
from kernel_agent.experiment.journal import RunKey
from kernel_agent.experiment.spec import Configuration, Task, check_file_name
from kernel_agent.runtime.pool import WarmPool
from kernel_agent.session.session import Session

#: The answer and error columns hold at most this many characters.
MAX_TEXT = 2000
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxlong, _REPR.maxother = 4, MAX_TEXT, 200, MAX_TEXT
_REPR.maxtuple = _REPR.maxlist = _REPR.maxarray = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 20
_REPR.maxdeque = 20
#: A task's input file given as a host path is read up to this size.
MAX_INPUT_FILE_BYTES = 1024 * 1024 * 1024


async def run_one(key: RunKey, task: Task, configuration: Configuration, *, pool: WarmPool,
                  cache: ReplyCache | None, notebook: Path, relative_notebook: str) -> dict[str, Any]:
    """Run ``task`` under ``configuration`` once, recorded to ``notebook``; the run's table row."""
    started_at = dt.datetime.now(dt.UTC).isoformat()
    started = time.monotonic()
    row = _empty_row(key, started_at)
    model: CachedModel | None = None
    owned = False
    result: AgentResult | None = None
    session: Session | None = None
    agent: Agent | None = None
    failure = ""
    try:
        inner, owned = configuration.model_for(task, key[2], cached=cache is not None)
        model = CachedModel(inner, cache, sample=key)
        agent = Agent(model, [*configuration.tools, *task.tools], notebook=notebook, pool=pool,
                      instructions=configuration.instructions, max_steps=configuration.max_steps,
                      max_tokens=configuration.max_tokens, max_cost=configuration.max_cost,
                      pricing=configuration.pricing, max_seconds=configuration.max_seconds,
                      observation_limit=configuration.observation_limit, cell_timeout=configuration.cell_timeout,
                      session_options={"seed": run_seed(key), **configuration.session_options})
        session = agent.new_session(task.prompt)
        await session.start()
        row["notebook"] = relative_notebook
        if task.files:
            workspace = session.local_workspace
            if workspace is None:
                raise ValueError("the task has input files, and the pool's kernels have no workspace on this host")
            await asyncio.to_thread(put_files, workspace, task.files)
        result = await agent.run(task.prompt, session=session)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a run that fails outside the agent is a row with the reason
        failure = _bounded(f"{type(exc).__name__}: {_safe_str(exc)}")
        result = result or (agent.last_result if agent is not None else None)
    finally:
        if session is not None:
            await _to_the_end(session.close())
        if model is not None and owned:
            await _to_the_end(model.close())
    if result is not None:
        _fill_from_result(row, result)
        if result.ok and not failure:
            row["answer"], row["success"], row["checker_error"] = await _judged(task, result)
    if failure:
        row["stop_reason"], row["error"] = "error", failure
    if model is not None:
        row["model_calls"], row["cached_replies"] = model.model_calls, model.cached_replies
        row["model_seconds"] = round(model.model_seconds, 6)
    row["seconds"] = round(time.monotonic() - started, 6)
    return row


async def _to_the_end(closing: Coroutine[Any, Any, None]) -> None:
    """Await ``closing`` until it is done, even when cancelled meanwhile (the cancellation is raised after).

    A run cancelled while it closes its session (the experiment stopping as another run finishes) must not
    end with the session half-closed: its pool lease and kernel would outlive the experiment's own end.
    """
    task = asyncio.ensure_future(closing)
    cancelled = False
    while True:
        try:
            await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


def run_seed(key: RunKey) -> int:
    """The seed of a run's kernel (``random``, NumPy): from its task and repeat, so a re-run sees the same
    outputs (the reply cache then hits) and every configuration meets the same draws (a fairer paired comparison).
    """
    _, task, repeat = key
    return int.from_bytes(hashlib.sha256(f"{task}\0{repeat}".encode()).digest()[:4], "big")


def put_files(workspace: Path, files: Mapping[str, str | bytes | os.PathLike[str]]) -> None:
    """Write a task's input files into a run's workspace, through descriptors (never by path inside it)."""
    top = safe_fs.open_dir(workspace)
    try:
        for name, content in files.items():
            *folders, leaf = check_file_name(name)
            data = _content(content)
            fd = os.dup(top)
            try:
                for folder in folders:
                    inner = safe_fs.open_subdir(fd, folder, create=True)
                    os.close(fd)
                    fd = inner
                safe_fs.write_new_file(fd, leaf, data, mode=0o644)
            finally:
                os.close(fd)
    finally:
        os.close(top)


def _content(content: str | bytes | os.PathLike[str]) -> bytes:
    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode("utf-8")
    # The caller's file on the host (a spec file may name it): a regular file only, its size known before it is read.
    # A FIFO would hang this run forever in a thread nobody can stop; /dev/zero would be read to the cap per run.
    fd = os.open(content, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise ValueError(f"the input file {content} is not a regular file (a FIFO, device or directory)")
        if status.st_size > MAX_INPUT_FILE_BYTES:
            raise ValueError(f"the input file {content} is over {MAX_INPUT_FILE_BYTES:,} bytes")
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as file:
            data = file.read(MAX_INPUT_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_INPUT_FILE_BYTES:
        raise ValueError(f"the input file {content} is over {MAX_INPUT_FILE_BYTES:,} bytes")
    return data


async def _judged(task: Task, result: AgentResult) -> tuple[str, bool, str]:
    """:func:`_judge` in a thread of its own, given up on (a failed check) after the task's ``check_timeout``.

    Not the event loop's default executor: checkers that never return would
    take its few threads, and with them every file operation of the experiment.
    """
    loop = asyncio.get_running_loop()
    verdict: asyncio.Future[tuple[str, bool, str]] = loop.create_future()

    def deliver(outcome: tuple[str, bool, str]) -> None:
        if not verdict.done():
            verdict.set_result(outcome)

    def judge() -> None:
        outcome = _judge(task, result)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits for it
            loop.call_soon_threadsafe(deliver, outcome)

    threading.Thread(target=judge, name=f"checker of {task.name}", daemon=True).start()
    try:
        return await asyncio.wait_for(verdict, task.check_timeout)
    except TimeoutError:
        return "", False, f"the checker did not finish within {task.check_timeout} s"


def _judge(task: Task, result: AgentResult) -> tuple[str, bool, str]:
    """(the answer's bounded repr, success, why the checker raised), in a worker thread: the answer is kernel-made."""
    shown = _answer_text(result)
    try:
        return shown, task.judge(result.answer, result), ""
    except Exception as exc:  # noqa: BLE001 - the user's checker may raise anything: the row says what
        return shown, False, _bounded(f"{type(exc).__name__}: {_safe_str(exc)}")


def _fill_from_result(row: dict[str, Any], result: AgentResult) -> None:
    usage = result.usage
    row.update(
        stop_reason=result.stop_reason.value, error=_bounded(result.error or ""),
        steps=len(result.steps),
        cells=sum(1 for step in result.steps for execution in step.executions if execution.cell is not None),
        tool_calls=result.tool_calls,
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens, cache_write_tokens=usage.cache_write_tokens,
        total_tokens=usage.total_tokens, cost=math.nan if result.cost is None else result.cost,
    )


def _answer_text(result: AgentResult) -> str:
    try:
        return _bounded(_REPR.repr(result.answer))
    except Exception as exc:  # noqa: BLE001 - a kernel-made value whose repr fails
        return _bounded(f"<answer whose repr raised {type(exc).__name__}>")


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)[: MAX_TEXT * 2]
    except Exception:  # noqa: BLE001 - an exception whose str() raises
        return "<message could not be shown>"


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _empty_row(key: RunKey, started_at: str) -> dict[str, Any]:
    configuration, task, repeat = key
    return {
        "configuration": configuration, "task": task, "repeat": repeat, "success": False, "answer": "",
        "checker_error": "", "stop_reason": "error", "error": "", "steps": 0, "cells": 0, "tool_calls": 0,
        "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0, "total_tokens": 0,
        "cost": math.nan, "seconds": 0.0, "model_seconds": 0.0, "model_calls": 0, "cached_replies": 0,
        "notebook": "", "started_at": started_at,
    }
