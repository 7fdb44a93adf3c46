#!/usr/bin/env bash
# One entry point that does its own set-up: creates .venv (or $KERNEL_AGENT_VENV)
# on first use, reinstalls when pyproject.toml changes, then runs the command.
#   ./dev.sh demo         the main job: a scripted agent session, offline, no API key
#   ./dev.sh example      a short sandboxed session without a model
#   ./dev.sh test [ARGS]  the test suite: most tests on xdist workers, then the `serial` ones alone
#                         (tests/run_suite.py); ARGS that pick tests (paths, -k, -m) run one plain pytest
#   ./dev.sh lint         ruff and mypy --strict on the package (configured in pyproject.toml)
#   ./dev.sh bench [ARGS] the benchmarks (bench/run_all.py)
#   ./dev.sh ARGS         any kernel-agent command
set -euo pipefail
cd "$(dirname "$0")"
venv=${KERNEL_AGENT_VENV:-.venv}
python=${PYTHON:-python3}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "kernel-agent needs Python 3.11 or newer ($python is $("$python" --version 2>&1))." >&2
  exit 1
fi
if [ ! -f "$venv/.installed" ] || [ pyproject.toml -nt "$venv/.installed" ]; then
  echo "Setting up $venv (first run only)..." >&2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test]"
  touch "$venv/.installed"
fi

command=${1:-demo}
[ $# -gt 0 ] && shift
case "$command" in
  test) exec "$venv/bin/python" tests/run_suite.py "$@" ;;
  lint) "$venv/bin/python" -m ruff check kernel_agent && exec "$venv/bin/python" -m mypy kernel_agent ;;
  bench) exec "$venv/bin/python" bench/run_all.py "$@" ;;
  *) exec "$venv/bin/kernel-agent" "$command" "$@" ;;
esac
