"""The declarative checks a TOML spec gives: what they accept, what they refuse, and hostile answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel_agent.experiment.checks import TEXT_LIMIT, Contains, Equals, Matches, Near, answer_number
from kernel_agent.experiment.spec import Task, fingerprint


def test_equals() -> None:
    assert Equals(4)(4) and Equals(4)(4.0) and not Equals(4)("4") and not Equals(4)(5)
    assert not Equals(1)(True) and not Equals(True)(1) and Equals(True)(True)  # a bool is not a number here
    assert Equals("Paris")("  Paris\n") and not Equals("Paris")("paris") and Equals("Paris", ignore_case=True)("PARIS")
    assert Equals([1, 2])([1, 2]) and Equals({"a": 1})({"a": 1}) and not Equals({"a": 1})({"a": 2})


def test_contains_and_regex() -> None:
    assert Contains("Paris")("It is Paris.") and not Contains("paris")("It is Paris.")
    assert Contains("paris", ignore_case=True)("PARIS") and Contains("42")({"answer": 42})
    assert Matches(r"^\d{4}-\d\d$")("2024-05") and not Matches(r"^\d{4}$")("20245")
    assert Matches("paris", ignore_case=True)("PARIS")
    with pytest.raises(Exception, match="missing"):
        Matches("(")
    # The answer is kernel-made: a backtracking pattern must not hold the experiment (re would take hours here).
    assert not Matches(r"^(a+)+$")("a" * 5000 + "!") and Matches(r"^(a+)+$")("a" * 5000)
    with pytest.raises(ValueError, match="linear time"):
        Matches(r"(a)\1")


def test_number_within_tolerance() -> None:
    assert Near(3.14159, tolerance=0.001)(3.142) and not Near(3.14159, tolerance=0.001)(3.15)
    within_5_percent = Near(100, tolerance=0.05, relative=True)
    assert within_5_percent("about 104 km") and not within_5_percent(106)
    assert Near(1234.5)("1,234.5") and Near(0)(0) and not Near(1)(True)
    assert not Near(1)("1 or 2") and not Near(1)("none") and not Near(1)(float("nan")) and not Near(1)(None)
    assert answer_number("-2.5e3") == -2500.0 and answer_number([1]) is None
    for bad in ((float("inf"), 0.0), (1.0, -1.0), (1.0, float("nan"))):
        with pytest.raises(ValueError):
            Near(bad[0], tolerance=bad[1])


def test_a_huge_answer_is_read_only_so_far() -> None:
    needle_after_limit = "x" * TEXT_LIMIT + "Paris"
    assert not Contains("Paris")(needle_after_limit) and not Matches("Paris")(needle_after_limit)
    assert not Near(7)("1 " * 10_000_000 + "7")  # ten million numbers: None, quickly (only the limit is read)


def test_the_fingerprint_names_what_a_check_checks() -> None:
    """A spec whose check changed is a different spec: its directory is not continued as if it were the same."""
    def spec(check: object) -> object:
        return fingerprint([Task("t", "p", check=check)], [], 1)["tasks"][0]["check"]  # type: ignore[index]

    assert spec(Equals(4)) == "kernel_agent.experiment.checks.equals(4)"
    assert spec(Equals(4)) != spec(Equals(5)) and spec(Near(1, tolerance=0.1)) != spec(Near(1, tolerance=0.2))
    assert spec(Contains("a")) != spec(Contains("a", ignore_case=True))


def test_a_spec_path_stays_in_the_spec_folder(tmp_path: Path) -> None:
    from kernel_agent.experiment.spec_file import inside

    (tmp_path / "data").mkdir()
    (tmp_path / "out").symlink_to("/etc")
    assert inside(tmp_path, "data/big.csv") == (tmp_path / "data" / "big.csv").resolve()
    for text in ("/etc/passwd", "../x", "data/../../x", "~/x", "", "out/passwd"):
        with pytest.raises(ValueError, match="spec's folder"):
            inside(tmp_path, text)
