"""A stand-in for the session side's SkillsSource: a `skills` namespace with one host tool, and a real library's
catalogue entries and manifest lines through the registry's extras hook."""

from __future__ import annotations

from kernel_agent.kernel.catalog_search import CatalogEntry
from kernel_agent.skills import SkillLibrary
from kernel_agent.tools.tool import Tool, tool_from_function


def load(name: str) -> str:
    """Load a skill's source (a stand-in for the real skills.load)."""
    return name


class LibrarySource:
    """Tools in the `skills` namespace plus the library's skills as search entries and a manifest section."""

    def __init__(self, library: SkillLibrary) -> None:
        self.library = library
        self.namespace_descriptions = {"skills": "Skills kept from earlier sessions"}

    @property
    def tools(self) -> list[Tool]:
        return [tool_from_function(load, namespace="skills")]

    def catalog_extras(self) -> list[CatalogEntry]:
        return self.library.catalog_entries()

    def manifest_extras(self, budget: int) -> str:
        return self.library.manifest_lines(budget)


PARSE = "def parse_amount(text):\n    return float(text.replace(',', ''))\n"
SLUG = "def slugify(text):\n    return '-'.join(text.lower().split())\n"


def filled_library(directory: str) -> SkillLibrary:
    library = SkillLibrary(directory)
    library.add("parse_amount", PARSE, "Parse an amount written with thousands separators")
    library.add("slugify", SLUG, "Turn a title into a URL slug")
    return library
