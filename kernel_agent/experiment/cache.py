"""The reply cache: a model's replies kept by the exact conversation that led to them.

A run asks its model through a :class:`CachedModel`. The key of a request is
the sha256 of a canonical JSON of everything that could change the reply: the
model's spec, which sample it is (configuration, task and repeat, so repeats
stay independent samples and two scripted models with one spec never share),
the system prompt, the code tool's schema, and every turn (texts, code and
call ids, observations, the hashes of the images' bytes). A hit gives the
stored reply and asks no model; a miss asks it and stores the reply. So a
re-run of an experiment is free and deterministic, and a repository can ship
a real-model experiment's cache for others to re-run offline.

On disk: ``DIR/ab/abcdef....json``, one file per key, written atomically
(a new file, then a rename), so concurrent runs and processes never see half
a file. A cache directory may come from elsewhere, so its files are read as
hostile input: through descriptors without following links, size-capped,
strict JSON, every field's type checked; a bad file raises
:class:`~kernel_agent.errors.ReplyCacheError` and is left as it is.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kernel_agent import safe_fs
from kernel_agent.errors import ReplyCacheError, UnsafePathError
from kernel_agent.models.base import (
    AssistantTurn,
    CodeRequest,
    CodeTool,
    Model,
    ModelReply,
    Turn,
    Usage,
    UserTurn,
)
from kernel_agent.models.scripted import ScriptedModel
from kernel_agent.protocol import strict_json

FORMAT = "kernel-agent-reply-cache/1"
#: A cached reply larger than this is refused (a reply is text and code: far below it in practice).
MAX_ENTRY_BYTES = 8 * 1024 * 1024
_MAX_TEXT = 4 * 1024 * 1024
_MAX_CODE_REQUESTS = 64
_HEX = "0123456789abcdef"

_Text = Annotated[str, Field(max_length=_MAX_TEXT)]
_Count = Annotated[int, Field(ge=0, le=10**12)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _StoredRequest(_Strict):
    call_id: Annotated[str, Field(max_length=1000)]
    code: _Text
    via: Annotated[str, Field(pattern=r"^(tool|fenced)$")]


class _StoredUsage(_Strict):
    input_tokens: _Count = 0
    output_tokens: _Count = 0
    cache_read_tokens: _Count = 0
    cache_write_tokens: _Count = 0


class _StoredReply(_Strict):
    text: _Text
    code: Annotated[list[_StoredRequest], Field(max_length=_MAX_CODE_REQUESTS)]
    usage: _StoredUsage
    stop_reason: Annotated[str, Field(max_length=200)]
    model: Annotated[str, Field(max_length=1000)]
    malformed: Annotated[list[Annotated[list[_Text], Field(min_length=2, max_length=2)]],
                         Field(max_length=_MAX_CODE_REQUESTS)]


class _StoredEntry(_Strict):
    format: Annotated[str, Field(pattern=f"^{FORMAT}$")]
    key: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    reply: _StoredReply


def conversation_key(*, model: str, sample: tuple[str, str, int], system: str, tool: CodeTool,
                     conversation: list[Turn]) -> str:
    """The cache key of one request: sha256 of the canonical JSON of what could change the reply."""
    configuration, task, repeat = sample
    document = {
        "format": FORMAT, "model": model, "configuration": configuration, "task": task, "repeat": repeat,
        "system": system, "tool": {"name": tool.name, "description": tool.description, "schema": tool.input_schema},
        "turns": [_turn(turn) for turn in conversation],
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _turn(turn: Turn) -> dict[str, Any]:
    if isinstance(turn, UserTurn):
        return {"user": turn.text}
    if isinstance(turn, AssistantTurn):
        reply = turn.reply
        return {"assistant": reply.text, "code": [[r.call_id, r.code, r.via] for r in reply.code],
                "malformed": [list(pair) for pair in reply.malformed]}
    return {"observations": [
        {"call_id": o.call_id, "text": o.text, "is_error": o.is_error, "via": o.via,
         "images": [[i.media_type, i.width, i.height, i.output_index,
                     hashlib.sha256(base64.b64decode(i.data)).hexdigest()] for i in o.images]}
        for o in turn.observations]}


class ReplyCache:
    """Model replies on disk under ``directory``, one file per conversation key (see the module's notes)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).resolve()

    def get(self, key: str) -> ModelReply | None:
        """The stored reply for ``key`` (None: not cached); ReplyCacheError for a file that cannot be used."""
        _check_key(key)
        if not self.directory.is_dir():
            return None
        root = safe_fs.open_dir(self.directory)
        try:
            data = _read_entry(root, key)
        finally:
            os.close(root)
        if data is None:
            return None
        where = f"the reply cache file {self.directory / key[:2] / (key + '.json')}"
        try:
            entry = _StoredEntry.model_validate(strict_json.loads(data, max_bytes=MAX_ENTRY_BYTES))
        except strict_json.StrictJSONError as exc:
            raise ReplyCacheError(f"{where} {exc}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "the entry"
            raise ReplyCacheError(f"{where} is not a cached reply: {field}: {first['msg']}") from None
        if entry.key != key:
            raise ReplyCacheError(f"{where} holds the reply of another conversation ({entry.key[:12]}...)")
        stored = entry.reply
        return ModelReply(
            text=stored.text, code=tuple(CodeRequest(r.call_id, r.code, r.via) for r in stored.code),
            usage=Usage(**stored.usage.model_dump()), stop_reason=stored.stop_reason, model=stored.model,
            malformed=tuple((pair[0], pair[1]) for pair in stored.malformed))

    def put(self, key: str, reply: ModelReply) -> None:
        """Store ``reply`` for ``key`` (atomically: readers see the old file or the new one, never half)."""
        _check_key(key)
        entry = {"format": FORMAT, "key": key, "reply": {
            "text": reply.text, "code": [{"call_id": r.call_id, "code": r.code, "via": r.via} for r in reply.code],
            "usage": reply.usage.model_dump(), "stop_reason": reply.stop_reason, "model": reply.model,
            "malformed": [list(pair) for pair in reply.malformed]}}
        data = json.dumps(entry, ensure_ascii=False, indent=1).encode("utf-8")
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        root = safe_fs.open_dir(self.directory)
        try:
            sub = safe_fs.open_subdir(root, key[:2], create=True, mode=0o700)
            try:
                safe_fs.replace_file(sub, f"{key}.json", data, mode=0o600)
            finally:
                os.close(sub)
        finally:
            os.close(root)

    def __len__(self) -> int:
        """How many replies are stored."""
        if not self.directory.is_dir():
            return 0
        return sum(1 for sub in self.directory.iterdir() if sub.is_dir() and not sub.is_symlink()
                   for name in os.listdir(sub) if name.endswith(".json") and not name.startswith("."))


def _check_key(key: str) -> None:
    if len(key) != 64 or any(char not in _HEX for char in key):
        raise ValueError(f"a reply cache key is 64 lowercase hex digits, got {key[:80]!r}")


def _read_entry(root: int, key: str) -> bytes | None:
    """The entry's bytes (None: absent), read without following a link and never past the size cap."""
    where = f"the reply cache entry {key[:2]}/{key}.json"
    try:
        os.stat(key[:2], dir_fd=root, follow_symlinks=False)
    except FileNotFoundError:
        return None
    try:
        sub = safe_fs.open_subdir(root, key[:2])
    except UnsafePathError as exc:
        raise ReplyCacheError(f"{where}: {exc}") from None
    try:
        try:
            os.stat(f"{key}.json", dir_fd=sub, follow_symlinks=False)
        except FileNotFoundError:
            return None
        try:
            fd = safe_fs.open_regular(sub, f"{key}.json", os.O_RDONLY)
        except UnsafePathError as exc:
            raise ReplyCacheError(f"{where}: {exc}") from None
        try:
            size = os.fstat(fd).st_size
            if not stat.S_ISREG(os.fstat(fd).st_mode) or size > MAX_ENTRY_BYTES:
                raise ReplyCacheError(f"{where} is {size:,} bytes, over the limit of {MAX_ENTRY_BYTES:,}")
            data = safe_fs.read_at_most(fd, MAX_ENTRY_BYTES)
            if data is None:
                raise ReplyCacheError(f"{where} is over the limit of {MAX_ENTRY_BYTES:,} bytes")
            return data
        finally:
            os.close(fd)
    finally:
        os.close(sub)


class CachedModel:
    """A run's model behind the reply cache (or none), counting real calls, cached replies and model time."""

    def __init__(self, model: Model, cache: ReplyCache | None, *, sample: tuple[str, str, int]) -> None:
        self.inner = model
        self.cache = cache
        self.sample = sample
        self.spec = model.spec
        self.provider = model.provider
        self.vision = getattr(model, "vision", False) is True
        #: Replies the model was really asked for, replies the cache gave, and seconds spent waiting for the model.
        self.model_calls = 0
        self.cached_replies = 0
        self.model_seconds = 0.0

    async def complete(self, system: str, conversation: list[Turn], tool: CodeTool) -> ModelReply:
        key = None
        if self.cache is not None:
            # Off the event loop: the key serialises and hashes the whole conversation (every observation, every
            # image decoded) at each step, and the entry is hostile bytes to parse; the other runs go on meanwhile.
            key, cached = await asyncio.to_thread(self._lookup, self.cache, system, conversation, tool)
            if cached is not None:
                self.cached_replies += 1
                if isinstance(self.inner, ScriptedModel):
                    # A script replies by position, not by conversation: a reply the cache gave is one of its
                    # replies used, so that a miss later in the run (a run cut short last time) gets the next one.
                    self.inner.position += 1
                return cached
        asked = time.monotonic()
        reply = await self.inner.complete(system, conversation, tool)
        self.model_seconds += time.monotonic() - asked
        self.model_calls += 1
        if self.cache is not None and key is not None:
            await asyncio.to_thread(self.cache.put, key, reply)
        return reply

    def _lookup(self, cache: ReplyCache, system: str, conversation: list[Turn],
                tool: CodeTool) -> tuple[str, ModelReply | None]:
        key = conversation_key(model=self.spec, sample=self.sample, system=system, tool=tool,
                               conversation=conversation)
        return key, cache.get(key)

    async def close(self) -> None:
        await self.inner.close()
