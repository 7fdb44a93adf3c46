"""Ranked search over a tool catalogue: one ranking for the host (ToolRegistry.search) and the kernel (tools.search).

Both sides build a :class:`SearchIndex` once from :class:`CatalogEntry`
records (the host from its registry, the kernel from the catalogue lines of
the generated SDK source) and answer every query from it, so the same query
ranks the same tools first on both sides of the process boundary. This
module is imported in the kernel: standard library only.

The ranking is BM25 over weighted fields (the tool's name counts most, then
its namespace, summary, parameter names and the start of its description),
with words split at camelCase, snake_case and punctuation, lowercased, and
plurals reduced (``invoices`` finds ``invoice``). An exact name (``getInvoice``,
``invoices.get_invoice``) ranks first, then a name the query starts.
A query word no tool has matches the words it starts (``subscr``). Queries
are hostile input: cut to :data:`MAX_QUERY_CHARS` and :data:`MAX_QUERY_TERMS`
distinct words before any work, and matched as words, never as patterns.
"""

from __future__ import annotations

import ast
import bisect
import functools
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_QUERY_CHARS = 1_000
MAX_QUERY_TERMS = 32
MAX_PREFIX_EXPANSION = 16  # vocabulary words one unknown query word may stand for
DESCRIPTION_CHARS = 400  # how much of a description (and its parameters') is searched: the start says what it is
_FIELD_CHARS = 1_000  # how much of any other field is searched

# Field weights: where a word appears says how much it means.
_NAME, _NAMESPACE, _SUMMARY, _PARAMETERS, _DESCRIPTION = 3.0, 1.5, 1.0, 0.6, 0.4
_K1, _B = 1.2, 0.5
_EXACT_BONUS, _PREFIX_BONUS = 1_000.0, 50.0
#: How a generated module's last line starts: its catalogue (kernel_agent.tools.catalog) as JSON in a string.
CATALOG_MARKER = "__catalog__ = "
_STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "for", "from", "how", "i", "in", "into", "is",
    "it", "me", "my", "of", "on", "or", "that", "the", "this", "to", "what", "which", "with", "you", "your", "all",
    "any"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class CatalogEntry:
    """What search knows of one tool."""

    path: str  # tools.ns.name: how code calls it
    name: str  # the Python identifier
    namespace: str  # the namespace identifier, "" at the top level
    line: str  # what a search result shows: path, signature, summary
    summary: str = ""
    parameters: tuple[str, ...] = ()
    description: str = ""
    original_name: str = ""  # the tool's own name (an operationId, an MCP name), when it differs
    kind: str = "tool"  # "tool": callable through ``tools``; else what the entry is ("skill": imported, not called)


@functools.lru_cache(maxsize=1 << 16)  # bounded: query words are hostile
def stem(word: str) -> str:
    """A plural reduced to its singular, roughly (``entries`` -> ``entry``, ``boxes`` -> ``box``)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "ches", "shes", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """The search words of ``text``: split at camelCase, underscores and punctuation, lowercased, stemmed."""
    text = unicodedata.normalize("NFKC", text)
    return [stem(w.casefold()) for w in _WORD.findall(_CAMEL.sub(" ", text))]


def _normal_name(text: str) -> str:
    """A name compared as a whole: its words joined by ``_``, unstemmed (``getInvoice`` == ``get_invoice``)."""
    text = unicodedata.normalize("NFKC", text)
    return "_".join(w.casefold() for w in _WORD.findall(_CAMEL.sub(" ", text)))


def query_terms(query: str) -> list[str]:
    """The distinct words of a query that count, bounded: stop words go unless the query is nothing else."""
    found = list(dict.fromkeys(words(query[:MAX_QUERY_CHARS])))
    kept = [w for w in found if w not in _STOPWORDS] or found
    return kept[:MAX_QUERY_TERMS]


class SearchIndex:
    """An inverted index over catalogue entries, built once; :meth:`search` ranks entries for a query."""

    def __init__(self, entries: Iterable[CatalogEntry]) -> None:
        self.entries: list[CatalogEntry] = list(entries)
        self._postings: dict[str, list[tuple[int, float]]] = {}
        self._lengths: list[float] = []
        self._names: list[set[str]] = []  # the whole-name forms an exact query hits
        seen: dict[str, list[str]] = {}  # descriptions repeat across a namespace: split each text once
        for index, entry in enumerate(self.entries):
            weights: dict[str, float] = {}
            fields = ((entry.name, _NAME), (entry.original_name, _NAME), (entry.namespace, _NAMESPACE),
                      (entry.summary, _SUMMARY), (" ".join(entry.parameters[:64]), _PARAMETERS),
                      (entry.description, _DESCRIPTION))
            length = 0.0
            for text, weight in fields:
                # A hostile server's 1 MB name or summary costs no more than a real one.
                text = text[:DESCRIPTION_CHARS if weight == _DESCRIPTION else _FIELD_CHARS]
                split = seen.get(text)
                if split is None:
                    split = seen[text] = words(text)
                for word in split:
                    weights[word] = weights.get(word, 0.0) + weight
                    length += weight
            for word, weight in weights.items():
                self._postings.setdefault(word, []).append((index, weight))
            self._lengths.append(length)
            path = entry.path.removeprefix("tools.")
            self._names.append({_normal_name(n[:_FIELD_CHARS]) for n in (entry.name, entry.original_name, path) if n})
        self._average = sum(self._lengths) / len(self._lengths) if self._lengths else 1.0
        self._vocabulary = sorted(self._postings)

    def __len__(self) -> int:
        return len(self.entries)

    def _expand(self, term: str) -> list[tuple[str, float]]:
        """The index words a query word stands for: itself, else (3+ letters) the words it starts, at half weight."""
        if term in self._postings:
            return [(term, 1.0)]
        if len(term) < 3:
            return []
        start = bisect.bisect_left(self._vocabulary, term)
        found = []
        for word in self._vocabulary[start:start + MAX_PREFIX_EXPANSION]:
            if not word.startswith(term):
                break
            found.append((word, 0.5))
        return found

    def search(self, query: str, limit: int | None = None) -> list[CatalogEntry]:
        """Entries ranked for ``query``, best first (ties in catalogue order); every entry for an empty query."""
        return [self.entries[index] for index in self.rank(query, limit)]

    def rank(self, query: str, limit: int | None = None) -> list[int]:
        """The positions of :meth:`search`'s entries."""
        if not isinstance(query, str):
            raise TypeError(f"search takes a string of words, not {type(query).__name__}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}")
        stop = None if limit is None else max(0, limit)
        terms = query_terms(query)
        if not terms:
            return list(range(len(self.entries)))[:stop]
        scores: dict[int, float] = {}
        matched: dict[int, int] = {}
        count = len(self.entries)
        for term in terms:
            hit: set[int] = set()
            for word, factor in self._expand(term):
                postings = self._postings[word]
                idf = math.log(1 + (count - len(postings) + 0.5) / (len(postings) + 0.5))
                for index, frequency in postings:
                    norm = _K1 * (1 - _B + _B * self._lengths[index] / self._average)
                    scores[index] = scores.get(index, 0.0) + factor * idf * frequency * (_K1 + 1) / (frequency + norm)
                    hit.add(index)
            for index in hit:
                matched[index] = matched.get(index, 0) + 1
        whole = _normal_name(query[:MAX_QUERY_CHARS])
        ranked = []
        for index, score in scores.items():
            # Tools that have every word of the query come before those that have some.
            score *= 0.5 + 0.5 * matched[index] / len(terms)
            names = self._names[index]
            if whole in names:
                score += _EXACT_BONUS
            elif len(whole) >= 3 and any(name.startswith(whole) for name in names):
                score += _PREFIX_BONUS
            ranked.append((-score, index))
        ranked.sort()
        return [index for _, index in ranked[:stop]]


def one_line(text: str, limit: int) -> str:
    """``text`` as one line of at most ``limit`` characters: whitespace and control characters collapsed,
    cut at a word boundary with ``...`` (never in the middle of a word unless the word alone is too long)."""
    cleaned = "".join(c if c.isprintable() else " " for c in text[: limit * 4 + 16])
    flat = " ".join(cleaned.split())
    if len(flat) <= limit:
        return flat
    if limit <= 3:
        return ""
    cut = flat[: limit - 3]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:.") + "..."


def entry_lines(entries: Sequence[CatalogEntry]) -> list[str]:
    """What a search returns to code: one line per entry."""
    return [entry.line for entry in entries]


def read_catalog(source: str) -> dict[str, object] | None:
    """The catalogue a generated module's source ends with, without running the module; None without one
    (a recording made before modules had it: the caller loads the module instead)."""
    start = source.rfind("\n" + CATALOG_MARKER)  # the last one: a docstring cannot come after it
    if start < 0:
        return None
    line = source[start + 1 + len(CATALOG_MARKER):].split("\n", 1)[0]
    try:
        text = ast.literal_eval(line)  # a string literal holding JSON
        catalog = json.loads(text) if isinstance(text, str) else None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(catalog, dict) or not isinstance(catalog.get("tools"), list):
        return None
    return catalog


def catalog_entries(namespace: str, catalog: dict[str, object]) -> list[CatalogEntry]:
    """The search entries of one module's catalogue (rows of name, signature, summary, parameters,
    description, original name)."""
    entries = []
    rows = catalog.get("tools")
    for row in rows if isinstance(rows, list) else []:
        if not (isinstance(row, list) and len(row) == 6):
            continue
        name, signature, summary, parameters, description, original = row
        path = f"tools.{namespace + '.' if namespace else ''}{name}"
        line = f"{path}{signature}: {summary}" if summary else f"{path}{signature}"
        entries.append(CatalogEntry(path=path, name=str(name), namespace=namespace, line=line,
                                    summary=str(summary), parameters=tuple(str(p) for p in parameters),
                                    description=str(description), original_name=str(original)))
    return entries + extra_entries(namespace, catalog)


def extra_entries(namespace: str, catalog: dict[str, object]) -> list[CatalogEntry]:
    """The entries a module's catalogue lists besides its tools (``extras``: skills to import, never to call):
    rows of kind, path, name, line, summary, description."""
    entries = []
    rows = catalog.get("extras")
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, list) and len(row) == 6 and all(isinstance(field, str) for field in row):
            kind, path, name, line, summary, description = row
            entries.append(CatalogEntry(path=path, name=name, namespace=namespace, line=line, summary=summary,
                                        description=description, kind=kind or "extra"))
    return entries


def module_doc(source: str) -> str:
    """A generated module's docstring, which is its first line, without running the module ("" if not)."""
    try:
        doc = ast.literal_eval(source.split("\n", 1)[0])
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return ""
    return doc if isinstance(doc, str) else ""
