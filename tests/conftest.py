"""Shared fixtures: real C-NMC cells (the development set where present, else the committed sample) and a small
synthetic C-NMC."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FULL_DEV_CELLS = ROOT.parent/"shared"/"data"/"cnmc-dev"  # 2,638 real cells, on the developers' machines only
SAMPLE_CELLS = ROOT/"tests"/"data"/"cnmc-sample"  # 48 real cells committed as test data (README.md there)
GIVEN_CELLS = os.environ.get("BLOODCANCER_DEV_CELLS")
# The real cells the tests use: the folder given, else the development set where present, else the sample.
DEV_CELLS = Path(GIVEN_CELLS) if GIVEN_CELLS else FULL_DEV_CELLS if FULL_DEV_CELLS.is_dir() else SAMPLE_CELLS


def pytest_report_header(config):
    which = ("given by $BLOODCANCER_DEV_CELLS" if GIVEN_CELLS else "the development set" if DEV_CELLS == FULL_DEV_CELLS
             else "the committed sample: the development set is absent")
    return f"real C-NMC cells: {DEV_CELLS} ({which})"


@pytest.fixture(scope="session")
def dev_cells() -> Path:
    """Real C-NMC cells: the development set of ../shared/data/cnmc-dev (or $BLOODCANCER_DEV_CELLS) where present,
    else the 48-cell sample in tests/data/cnmc-sample."""
    if not DEV_CELLS.is_dir(): pytest.skip(f"real C-NMC cells not found at {DEV_CELLS}")
    return DEV_CELLS


@pytest.fixture(scope="session")
def dev_manifest(dev_cells):
    "The MANIFEST.csv of `dev_cells`: what each file is, as the set's maker recorded it (class, subject)."
    import pandas as pd
    if not (dev_cells/"MANIFEST.csv").is_file(): pytest.skip(f"{dev_cells} has no MANIFEST.csv to check against")
    return pd.read_csv(dev_cells/"MANIFEST.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="session")
def synthetic_cnmc(tmp_path_factory) -> Path:
    "A small synthetic C-NMC in the Kaggle layout, written once per test session."
    from bloodcancer.data import make_synthetic_cnmc
    return make_synthetic_cnmc(tmp_path_factory.mktemp("synthetic"), seed=0)

@pytest.fixture(scope="session")
def tiny_run(synthetic_cnmc, tmp_path_factory) -> Path:
    """A complete run folder of the run folder contract: AlexNet trained on `synthetic_cnmc` at 32 pixels for 2 epochs,
    random start."""
    from bloodcancer.train import train
    return train(model="AlexNet", data=synthetic_cnmc, image_size=32, epochs=2, weights=None,
                 outputs=tmp_path_factory.mktemp("tiny-run"), verbose=0)
