"""The static checks of a proposal (no kernel): names, sizes, syntax, the defined name, the import policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel_agent.errors import SkillRefusedError
from kernel_agent.skills.checks import SkillPolicy, check_code, check_name, check_texts

POLICY = SkillPolicy()


@pytest.mark.parametrize("name", ["../x", "x/y", "__init__", "_private", "class", "match", "naïve", "a b", "", "1x",
                                  "propose", "x" * 65, "skills.x"])
def test_names_that_are_not_plain_public_identifiers_are_refused(name: str) -> None:
    with pytest.raises(SkillRefusedError) as refused:
        check_name(name)
    assert str(refused.value)  # the reason is said


def test_a_plain_name_is_kept() -> None:
    assert check_name("parse_dates") == "parse_dates"


@pytest.mark.parametrize(("source", "description", "tests", "reason"), [
    ("x" * 100_001, "d", "", "the source is 100,001 characters"),
    ("def f(): pass", "d", "t" * 100_001, "the tests are 100,001 characters"),
    ("def f(): pass", "two\nlines", "", "one line"),
    ("def f(): pass", "", "", "one line"),
    ("def f(): pass", "d" * 301, "", "one line"),
    ("   ", "d", "", "the source is empty"),
    (b"def f(): pass", "d", "", "the source must be text"),
])
def test_texts_are_bounded_and_typed(source: object, description: str, tests: str, reason: str) -> None:
    with pytest.raises(SkillRefusedError, match=reason):
        check_texts(POLICY, source, description, tests)


@pytest.mark.parametrize(("source", "reason"), [
    ("def f(:\n", "the source cannot be parsed"),
    ("def f(): pass\x00", "the source cannot be parsed"),
    ("(" * 300 + ")" * 300, "the source cannot be parsed"),
    ("def g(): pass", "does not define 'f' at its top level"),
    ("class C:\n    def f(self): pass", "does not define 'f'"),
    ("import os\ndef f(): pass", "imports 'os'"),
    ("def f():\n    import subprocess\n    return subprocess", "imports 'subprocess'"),
    ("from os import path\ndef f(): pass", "imports 'os'"),
    ("import os.path as p\ndef f(): pass", "imports 'os.path'"),
    ("import xml.etree, importlib.util\ndef f(): pass", "imports 'importlib.util'"),
    ("def f():\n    return __import__('os')", "uses '__import__'"),
    ("def f():\n    return eval('1')", "uses 'eval'"),
    ("def f(x):\n    return x.__builtins__", "uses '.__builtins__'"),
    ("from . import g\ndef f(): pass", "a relative import"),
    ("import kernel_agent.kernel.sdk\ndef f(): pass", "imports 'kernel_agent.kernel.sdk'"),
])
def test_code_that_does_not_parse_define_or_keep_the_policy_is_refused(source: str, reason: str) -> None:
    with pytest.raises(SkillRefusedError, match=reason):
        check_code(POLICY, "f", source, "")


def test_tests_must_parse_too() -> None:
    with pytest.raises(SkillRefusedError, match="the tests cannot be parsed"):
        check_code(POLICY, "f", "def f(): pass", "assert (")


def test_ordinary_code_passes_and_other_skills_may_be_imported() -> None:
    source = ("import re, csv, io, json, math\nfrom datetime import date\nfrom skills import slug\n"
              "PATTERN = re.compile('x')\ndef f(text):\n    return slug(text)\n")
    check_code(POLICY, "f", source, "assert f('a') == 'a'")
    check_code(POLICY, "f", "f = lambda x: x", "")
    check_code(POLICY, "F", "class F:\n    pass", "")


def test_an_allow_list_admits_only_its_modules() -> None:
    policy = SkillPolicy(allowed_modules=frozenset({"re"}))
    check_code(policy, "f", "import re\ndef f(): pass", "")
    with pytest.raises(SkillRefusedError, match="imports 'json'"):
        check_code(policy, "f", "import json\ndef f(): pass", "")


def test_the_forbidden_list_is_the_operators() -> None:
    policy = SkillPolicy(forbidden_modules=frozenset({"json"}))
    check_code(policy, "f", "import os\ndef f(): pass", "")
    with pytest.raises(SkillRefusedError, match="imports 'json'"):
        check_code(policy, "f", "import json\ndef f(): pass", "")


@pytest.mark.parametrize("options", [{"test_timeout": float("nan")}, {"test_timeout": -1}, {"test_timeout": 0},
                                     {"test_timeout": float("inf")}, {"max_proposals": -1},
                                     {"test_output_bytes": 0}, {"max_source_chars": True}])
def test_a_policy_out_of_range_is_a_named_error(options: dict[str, object]) -> None:
    from kernel_agent.errors import SessionOptionError

    with pytest.raises(SessionOptionError, match="SkillPolicy"):
        SkillPolicy(**options)  # type: ignore[arg-type]


def test_no_trial_slot_at_all_is_a_named_error(tmp_path: Path) -> None:
    from kernel_agent.errors import SessionOptionError
    from kernel_agent.skills import SkillsSource

    with pytest.raises(SessionOptionError, match="max_trials"):
        SkillsSource(tmp_path / "skills", max_trials=0)  # every proposal would wait for ever
