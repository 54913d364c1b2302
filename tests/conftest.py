"""Shared fixtures: real C-NMC cells (`bloodcancer.core.dev_cells`: the development set where present, else the
committed sample) and a small synthetic C-NMC."""
import os
from pathlib import Path

import pytest

from bloodcancer.core import DEV_CELLS_ENV, dev_cells as find_dev_cells

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CELLS = ROOT/"tests"/"data"/"cnmc-sample"  # 48 real cells committed as test data (README.md there)
GIVEN_CELLS = os.environ.get(DEV_CELLS_ENV)
# The real cells the tests use (bloodcancer.core.dev_cells): the folder given, else the development set (2,638 real
# cells, on the developers' machines only) where present, else the sample; None where a folder given is absent.
DEV_CELLS = find_dev_cells()
# The development set alone; where it is absent, the folder it was looked for in (so `FULL_DEV_CELLS/...` is no file)
FULL_DEV_CELLS = find_dev_cells(sample=False) or Path(GIVEN_CELLS or ROOT.parent/"shared"/"data"/"cnmc-dev")


def absent() -> str:
    "Why there are no real cells."
    return f"${DEV_CELLS_ENV} names {GIVEN_CELLS}, absent" if GIVEN_CELLS else "no development set and no sample"


def pytest_report_header(config):
    if DEV_CELLS is None: return f"real C-NMC cells: none ({absent()}): their tests skip"
    which = (f"given by ${DEV_CELLS_ENV}" if GIVEN_CELLS else "the development set" if DEV_CELLS == FULL_DEV_CELLS
             else "the committed sample: the development set is absent")
    return f"real C-NMC cells: {DEV_CELLS} ({which})"


@pytest.fixture(scope="session")
def dev_cells() -> Path:
    """Real C-NMC cells (`bloodcancer.core.dev_cells`): the development set of ../shared/data/cnmc-dev (or
    $BLOODCANCER_DEV_CELLS) where present, else the 48-cell sample in tests/data/cnmc-sample."""
    if DEV_CELLS is None: pytest.skip(f"real C-NMC cells not found: {absent()}")
    return DEV_CELLS


@pytest.fixture(scope="session")
def dev_manifest(dev_cells):
    "The MANIFEST.csv of `dev_cells`: what each file is, as the set's maker recorded it (class, subject)."
    import pandas as pd
    if not (dev_cells/"MANIFEST.csv").is_file(): pytest.skip(f"{dev_cells} has no MANIFEST.csv to check against")
    return pd.read_csv(dev_cells/"MANIFEST.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="session")
def synthetic_cnmc(tmp_path_factory) -> Path:
    """A small synthetic C-NMC in the Kaggle layout, written once per test session. Not `bloodcancer.demo.tiny_cnmc`:
    its tests want make_synthetic_cnmc's defaults (450-pixel cells, 9 ALL and 6 normal training subjects, so that
    `all` is the larger class)."""
    from bloodcancer.data import make_synthetic_cnmc
    return make_synthetic_cnmc(tmp_path_factory.mktemp("synthetic"), seed=0)
