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

@pytest.fixture(scope="session")
def tiny_run(synthetic_cnmc, tmp_path_factory) -> Path:
    "A complete run folder of the run folder contract: AlexNet trained on `synthetic_cnmc` at 32 pixels for 2 epochs, random start."
    from bloodcancer.train import train
    return train(model="AlexNet", data=synthetic_cnmc, image_size=32, epochs=2, weights=None,
                 outputs=tmp_path_factory.mktemp("tiny-run"), verbose=0)
