"""Shared fixtures: the real development cells (skipped with a reason where absent) and a small synthetic C-NMC."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEV_CELLS = Path(os.environ.get("BLOODCANCER_DEV_CELLS", ROOT.parent/"shared"/"data"/"cnmc-dev"))

@pytest.fixture(scope="session")
def dev_cells() -> Path:
    "The 2,638 real C-NMC cells of ../shared/data/cnmc-dev; tests using it skip on machines without it."
    if not DEV_CELLS.is_dir():
        pytest.skip(f"real C-NMC development cells not found at {DEV_CELLS} (they exist only on the developers' "
                    "machines; set BLOODCANCER_DEV_CELLS to point elsewhere)")
    return DEV_CELLS

@pytest.fixture(scope="session")
def synthetic_cnmc(tmp_path_factory) -> Path:
    "A small synthetic C-NMC in the Kaggle layout, written once per test session."
    from bloodcancer.data import make_synthetic_cnmc
    return make_synthetic_cnmc(tmp_path_factory.mktemp("synthetic"), seed=0)
