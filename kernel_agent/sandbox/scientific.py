"""What the scientific stack needs inside the sandbox: bounded native thread pools and a prebuilt font cache.

Native thread pools (OpenBLAS, MKL, OpenMP and what follows it, such as
Arrow's CPU pool, numexpr, BLIS, Rayon) start one thread per host core by
default. In a sandbox whose process limit may be a pool shared with other
sessions, and whose CPU is a fair share, that is many threads for little
gain; one thread per pool also makes floating-point reductions independent
of the machine, so a replay elsewhere computes the same digits. A session
that wants more raises them through ``SandboxPolicy(env=...)`` (recorded as
a loosening).

matplotlib keeps its configuration and caches in ``MPLCONFIGDIR``, a
directory of the sandbox's private /tmp. Its font cache (a scan of every
font on the host) would be rebuilt at the first plot of every new kernel,
about a second each time: the host builds it once per matplotlib
installation, in its own cache directory, and binds the file read-only into
every kernel's ``MPLCONFIGDIR`` (see :func:`host_font_cache`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from kernel_agent.errors import UnsafePathError
from kernel_agent.safe_fs import open_dir, open_regular, replace_file
from kernel_agent.sandbox.hostpython import helper_env, python_command

log = logging.getLogger(__name__)

#: matplotlib's configuration and cache directory inside the sandbox (in its private, sized /tmp).
MPLCONFIGDIR = "/tmp/matplotlib"

#: Native thread pools sized to the sandbox (see the module docstring), and glibc arenas kept few, so
#: memory limits measure data rather than allocator slack.
NATIVE_THREAD_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "BLIS_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "NUMEXPR_MAX_THREADS": "1",
    "RAYON_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2",
}

_BUILD_TIMEOUT_SECONDS = 300.0
_lock = threading.Lock()
_built: dict[str, Path | None] = {}


def kernel_env() -> dict[str, str]:
    """The variables the scientific stack needs in the kernel's environment."""
    return {"MPLCONFIGDIR": MPLCONFIGDIR, **NATIVE_THREAD_ENV}


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kernel-agent"


def host_font_cache() -> Path | None:
    """matplotlib's font cache for the host's matplotlib, built once; None without matplotlib or on failure.

    Keyed by the matplotlib version and installation directory (the cache
    holds absolute paths of the fonts matplotlib ships). Built by a child
    Python with ``MPLCONFIGDIR`` set to a fresh directory, then renamed into
    place, so concurrent hosts never see half a file. Blocking (seconds the
    first time): call it off the event loop.
    """
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return None
    try:
        version = importlib.metadata.version("matplotlib")
    except importlib.metadata.PackageNotFoundError:
        return None
    key = f"{version}-{hashlib.sha256(spec.origin.encode()).hexdigest()[:12]}"
    with _lock:
        if key not in _built:
            _built[key] = _find_or_build(_cache_root() / f"matplotlib-{key}")
        return _built[key]


#: A font cache is a JSON list of a few thousand fonts (about 100 KB); a larger file is not one.
_MAX_FONT_CACHE_BYTES = 16 * 1024 * 1024


def font_cache_for(run_dir: Path, writable: Iterable[Path] = ()) -> Path | None:
    """A private copy, in the kernel's run directory, of the host's font cache (what the sandbox binds), or None.

    The cache lives in a shared place (``~/.cache``, or wherever
    ``XDG_CACHE_HOME`` says, perhaps inside a workspace) and bwrap binds its
    source as root, following links: so it is never bound from there. It is
    read without following a link, only if it is a plain file of the host's
    uid that nobody else may write, and copied into the host-private run
    directory. When the cache directory lies in a tree this launch's
    sandbox can write (``writable``), it is neither built nor used: the host
    would create directories and files where the kernel can plant links.
    Blocking: call it off the event loop.
    """
    root = _cache_root()
    roots = {Path(os.path.abspath(root)), root.resolve()}  # where it is named, and where its links lead now
    for tree in writable:
        tree = tree.resolve()
        if any(root.is_relative_to(tree) or tree.is_relative_to(root) for root in roots):
            log.warning("kernel-agent: matplotlib's font cache (%s) is in %s, which the sandbox can write; it is not "
                        "prebuilt for this kernel", root, tree)
            return None
    cache = host_font_cache()
    if cache is None:
        return None
    try:
        directory = open_dir(cache.parent)
        try:
            fd = open_regular(directory, cache.name, os.O_RDONLY)
        finally:
            os.close(directory)
        with os.fdopen(fd, "rb") as file:
            status = os.fstat(file.fileno())
            if status.st_uid != os.getuid() or status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise UnsafePathError(f"{cache} is not the host's own file (owner {status.st_uid}, mode "
                                      f"{stat.S_IMODE(status.st_mode):o})")
            data = file.read(_MAX_FONT_CACHE_BYTES + 1)
        if len(data) > _MAX_FONT_CACHE_BYTES:
            raise UnsafePathError(f"{cache} is larger than a font cache")
        run_fd = open_dir(run_dir)
        try:
            replace_file(run_fd, cache.name, data, mode=0o644)  # read by the sandbox's uid through the bind
        finally:
            os.close(run_fd)
    except (OSError, UnsafePathError) as exc:
        log.warning("kernel-agent: matplotlib's prebuilt font cache is not used (%s); the kernel builds its own at "
                    "its first plot", exc)
        return None
    return run_dir / cache.name


def _find_or_build(directory: Path) -> Path | None:
    existing = sorted(directory.glob("fontlist-*.json")) if directory.is_dir() else []
    if existing:
        return existing[-1]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory, prefix=".build-") as build:
            # Isolated (hostpython): the host's working directory may be a workspace a kernel planted
            # a `matplotlib` package in, and the build needs none of the host's secrets.
            env = helper_env(MPLCONFIGDIR=build, MPLBACKEND="agg")
            subprocess.run([*python_command(), "-c", "import matplotlib.font_manager"], env=env, cwd=build,
                           check=True, capture_output=True, timeout=_BUILD_TIMEOUT_SECONDS)
            made = sorted(Path(build).glob("fontlist-*.json"))
            if not made:
                return None
            target = directory / made[-1].name
            os.chmod(made[-1], 0o644)  # read by the sandbox's uid through the bind mount
            os.replace(made[-1], target)
            return target
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("kernel-agent: matplotlib's font cache could not be prebuilt (%s); each kernel builds its "
                    "own at its first plot", exc)
        return None
