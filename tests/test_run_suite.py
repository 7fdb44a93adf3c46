"""``./dev.sh test`` (tests/run_suite.py): which arguments run the two phases, and the suite's exit status."""

from __future__ import annotations

import pytest

from .run_suite import combined_exit_code, picks_tests


@pytest.mark.parametrize("args", [[], ["-q", "-p", "no:cacheprovider"], ["-q", "--durations=60"], ["--tb", "short"],
                                  ["-p", "no:randomly", "-v"], ["-rA"]])
def test_output_options_run_the_whole_suite_in_two_phases(args: list[str]) -> None:
    assert not picks_tests(args)


@pytest.mark.parametrize("args", [["tests/cli"], ["tests/cli/test_run.py::test_run"], ["-q", "tests"], ["-k", "pool"],
                                  ["-kpool"], ["-m", "serial"], ["-n", "2"], ["--numprocesses=2"], ["--lf"],
                                  ["-p", "no:cacheprovider", "tests/verify"], ["--pdb"]])
def test_arguments_that_pick_tests_run_one_plain_pytest(args: list[str]) -> None:
    assert picks_tests(args)


def test_the_suite_fails_when_either_phase_fails_and_is_empty_only_when_both_are() -> None:
    assert combined_exit_code(0, 0) == 0
    assert combined_exit_code(1, 0) == 1 and combined_exit_code(0, 1) == 1 and combined_exit_code(2, 1) == 2
    assert combined_exit_code(5, 0) == 0 and combined_exit_code(0, 5) == 0 and combined_exit_code(5, 1) == 1
    assert combined_exit_code(5, 5) == 5


def test_the_serial_marker_is_registered(pytestconfig: pytest.Config) -> None:
    assert any(line.startswith("serial:") for line in pytestconfig.getini("markers"))
