#!/usr/bin/env bash
# The project's test command (README, CI and .ci/run all call this): set up .venv from scratch when it is
# missing, install the package with its development extras, check that the notebooks and the exported
# library agree, then run the notebook tests and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
export MPLBACKEND=Agg TF_CPP_MIN_LOG_LEVEL=2 PYTHONWARNINGS=ignore::DeprecationWarning

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  before=$(git status --porcelain -- nbs bloodcancer README.md)
  .venv/bin/nbdev_clean
  .venv/bin/nbdev_export
  .venv/bin/python tests/make_readme.py
  after=$(git status --porcelain -- nbs bloodcancer README.md)
  if [ "$before" != "$after" ]; then
    echo "nbdev_clean, nbdev_export or tests/make_readme.py changed files: the notebooks, the library and the README"
    echo "are out of sync. Run them, review and commit:"
    git status --porcelain -- nbs bloodcancer README.md
    exit 1
  fi
fi

.venv/bin/nbdev_test --n_workers 2 --timing
.venv/bin/python -m pytest tests "$@"
