"""Experiment: every task under every configuration, ``repeats`` times, through one warm pool.

At most ``concurrency`` runs at once, on a pool of that many warm kernels;
each run journaled as it finishes (see :mod:`.journal`), so an experiment
run again in its directory does only the runs it had not finished. At the
end the table is written next to the journal (``results.csv``, and
``results.parquet`` when pyarrow is installed). Cancelling it (Ctrl-C)
cancels the runs in flight, each closing its session (the notebooks kept,
sealed), and leaves the journal as it was after the last finished run.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from kernel_agent.errors import ExperimentError
from kernel_agent.experiment.cache import ReplyCache
from kernel_agent.experiment.journal import NOTEBOOKS_DIR, ExperimentDirectory, RunKey
from kernel_agent.experiment.results import ExperimentResults
from kernel_agent.experiment.runs import run_one
from kernel_agent.experiment.spec import Configuration, Task, check_name, fingerprint
from kernel_agent.experiment.table import write_results
from kernel_agent.record.location import default_record_dir
from kernel_agent.runtime.pool import WarmPool
from kernel_agent.sandbox.policy import SandboxPolicy
from kernel_agent.session.pool import KernelPool

#: What ``on_run`` is given after each finished run: its row (a dict of the table's columns).
OnRun = Callable[[dict[str, Any]], Awaitable[Any] | Any]


class Experiment:
    """Tasks x configurations x repeats of agent runs, recorded, journaled, and tabled.

    ``directory`` (default: ``experiments/NAME`` beside the host's record
    directory) keeps the spec, the journal, each run's notebook, the reply
    cache and the results. ``cache``: True (a :class:`ReplyCache` in
    ``directory/cache``), a ReplyCache of your own (shared between
    experiments, or shipped with a repository), or None/False (every reply
    asked of the model). ``pool``: a started pool to use instead of making
    one of ``concurrency`` kernels (with ``policy``).
    """

    def __init__(
        self,
        name: str,
        tasks: Sequence[Task],
        configurations: Sequence[Configuration],
        *,
        repeats: int = 3,
        directory: str | os.PathLike[str] | None = None,
        concurrency: int = 2,
        cache: bool | ReplyCache | None = True,
        pool: WarmPool | None = None,
        policy: SandboxPolicy | None = None,
    ) -> None:
        self.name = check_name("experiment", name)
        self.tasks = list(tasks)
        self.configurations = list(configurations)
        if not self.tasks or not self.configurations:
            raise ExperimentError("an experiment needs at least one task and one configuration")
        for kind, items in (("task", self.tasks), ("configuration", self.configurations)):
            names = [item.name for item in items]
            if len(set(names)) != len(names):
                raise ExperimentError(f"two {kind}s share a name: {sorted({n for n in names if names.count(n) > 1})}")
        if not isinstance(repeats, int) or not 1 <= repeats <= 100_000:
            raise ExperimentError(f"repeats must be an integer from 1 to 100,000, got {repeats!r}")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ExperimentError(f"concurrency must be a positive integer, got {concurrency!r}")
        if pool is not None and policy is not None:
            raise ExperimentError("give a pool or a policy, not both (a pool's kernels run under its own policy)")
        self.repeats = repeats
        self.concurrency = concurrency
        self.directory = Path(directory).resolve() if directory is not None else (
            default_record_dir().parent / "experiments" / name)
        self._own_cache = cache is True
        self.cache: ReplyCache | None = (ReplyCache(self.directory / "cache") if cache is True
                                         else cache if isinstance(cache, ReplyCache) else None)
        self.pool = pool
        self.policy = policy

    @property
    def run_keys(self) -> list[RunKey]:
        """Every run, in table order: configuration, then task, then repeat."""
        return [(config.name, task.name, repeat) for config in self.configurations for task in self.tasks
                for repeat in range(self.repeats)]

    def spec(self) -> dict[str, Any]:
        """The spec's fingerprint (what ``experiment.json`` holds): changing any of it refuses the directory."""
        return fingerprint(self.tasks, self.configurations, self.repeats)

    async def run(self, on_run: OnRun | None = None, *, start_over: bool = False) -> ExperimentResults:
        """Do every run not yet finished in the directory; the whole table (finished before, and now).

        ``on_run(row)`` (sync or async) is called after each run is journaled.
        ``start_over`` moves the directory's earlier runs under ``previous/``
        first (needed when the spec changed: without it that is an ExperimentError).
        """
        place = ExperimentDirectory(self.directory)
        lock = await asyncio.to_thread(place.lock)
        try:
            await asyncio.to_thread(place.prepare, self.name, self.spec(), start_over=start_over)
            keys = self.run_keys
            wanted = set(keys)
            finished = await asyncio.to_thread(place.finished, wanted)
            unknown = [key for key in finished if key not in wanted]
            if unknown:
                raise ExperimentError(f"{place.journal} holds runs this spec does not have, e.g. {unknown[0]}")
            todo = [key for key in keys if key not in finished]
            # Every run's notebook folder checked (a real directory, no link) before a kernel starts; and the
            # directory's own cache/, which replies are written into (ReplyCache resolves a link it is given).
            await asyncio.to_thread(_check_folders, place, todo, self._own_cache)
            if todo:
                await self._run_all(place, todo, on_run)
            return await asyncio.to_thread(self._finish, place)
        finally:
            os.close(lock)

    def run_sync(self, on_run: OnRun | None = None, *, start_over: bool = False) -> ExperimentResults:
        """:meth:`run` for scripts (not from inside a running event loop); Ctrl-C stops it cleanly."""
        return asyncio.run(self.run(on_run, start_over=start_over))

    async def _run_all(self, place: ExperimentDirectory, todo: list[RunKey], on_run: OnRun | None) -> None:
        pool = self.pool
        own_pool = pool is None
        if pool is None:
            pool = await KernelPool(size=self.concurrency, policy=self.policy).start()
        tasks = {task.name: task for task in self.tasks}
        configurations = {config.name: config for config in self.configurations}
        journal_lock = asyncio.Lock()
        waiting = iter(todo)  # shared by the workers: each run is taken once

        async def one(key: RunKey) -> None:
            notebook = await asyncio.to_thread(place.notebook, key)
            await asyncio.to_thread(place.set_aside_partial, notebook)
            relative = notebook.relative_to(place.path).as_posix()
            row = await run_one(key, tasks[key[1]], configurations[key[0]], pool=pool, cache=self.cache,
                                notebook=notebook, relative_notebook=relative)
            async with journal_lock:
                await asyncio.to_thread(place.append, row)
            if on_run is not None:
                outcome = on_run(row)
                if inspect.isawaitable(outcome):
                    await outcome

        async def worker() -> None:
            for key in waiting:
                await one(key)

        # `concurrency` workers, not a task per run: a run of 100,000 runs costs no more memory than one of ten.
        workers = [asyncio.create_task(worker(), name=f"experiment worker {index}")
                   for index in range(min(self.concurrency, len(todo)))]
        try:
            for done in asyncio.as_completed(workers):
                await done  # an exception here (journal, on_run) stops the experiment
        finally:
            for running in workers:
                running.cancel()
            # Each cancelled run closes its session (shielded) before it ends: wait for all of them.
            await asyncio.shield(asyncio.gather(*workers, return_exceptions=True))
            if own_pool:
                await asyncio.shield(pool.close())

    def _finish(self, place: ExperimentDirectory) -> ExperimentResults:
        """The table from the journal, in run order, written as CSV (and Parquet when pyarrow is there)."""
        results = ExperimentResults.load(place.path)
        write_results(results.table, place.path)
        return results


def _check_folders(place: ExperimentDirectory, todo: list[RunKey], own_cache: bool) -> None:
    if own_cache and todo:
        place.folder("cache")
    for configuration, task in dict.fromkeys((key[0], key[1]) for key in todo):
        place.folder(NOTEBOOKS_DIR, configuration, task)
