"""Seed the kernel's global random generators: ``random`` now, NumPy's global one when NumPy is first imported.

Called by the host with the session's recorded seed when it gives a kernel
its SDK (at start and after every restart), so a replay or a resume, which
seed their kernel with the same value, draw the same numbers. NumPy is not
imported to seed it: that would cost every session its import time and
memory (about 150 ms and 20 MB here) whether it uses NumPy or not. Instead
an import hook seeds ``numpy.random`` the moment it is first imported (NumPy
2 imports it lazily, on first use of ``np.random``). Generators made
without a seed (``np.random.default_rng()``, ``random.Random()``) draw from
the operating system and are not covered: seed those in the code.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import random
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from kernel_agent.protocol.names import SEED_MAX

_NUMPY_RANDOM = "numpy.random"


def seed_session(seed: int) -> None:
    """Seed ``random`` now and NumPy's global generator now or at its first import."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"a session seed is an int from 0 to {SEED_MAX}, got {seed!r}")
    random.seed(seed)
    for finder in [f for f in sys.meta_path if isinstance(f, _SeedOnImport)]:
        sys.meta_path.remove(finder)  # a second call (a restart reuses no kernel, but be exact) replaces the first
    module = sys.modules.get(_NUMPY_RANDOM)
    if module is not None:
        module.seed(seed)
    else:
        sys.meta_path.insert(0, _SeedOnImport(seed))


class _SeedOnImport(importlib.abc.MetaPathFinder):
    """Finds ``numpy.random`` through the other finders and seeds it once its module has run."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != _NUMPY_RANDOM:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _SeedingLoader(spec.loader, self)
                return spec
            if spec is not None:
                return spec  # a loader we cannot wrap: NumPy stays unseeded rather than broken
        return None

    def seeded(self) -> None:
        """numpy.random ran: this hook's work is done."""
        if self in sys.meta_path:
            sys.meta_path.remove(self)


class _SeedingLoader(importlib.abc.Loader):
    """The real loader of ``numpy.random``, then ``numpy.random.seed(seed)``."""

    def __init__(self, loader: Any, hook: _SeedOnImport) -> None:
        self.loader = loader
        self.hook = hook

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self.loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        self.hook.seeded()
        module.seed(self.hook.seed)

    def __getattr__(self, name: str) -> Any:
        # Anything else a loader offers (get_resource_reader, is_package, ...) is the real loader's.
        return getattr(self.loader, name)
