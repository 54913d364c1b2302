"""The data layer on the real development cells and on the synthetic C-NMC (the notebook 01_data tests the rest)."""
from pathlib import Path

import pytest

from bloodcancer.data import (index_dataset, leakage_report, make_split, summarize_index, validate_images,
                              assert_no_shared_subjects)


def counts(manifest) -> str:
    "`N images, S subjects` as summarize_index writes it, computed from a manifest."
    return f"{len(manifest):,} images, {manifest['subject'].nunique()} subjects"


def test_dev_cells_index(dev_cells, dev_manifest):
    # The set's manifest (the development set's 2,638 cells, or the 48-cell sample) says what each file is.
    index = index_dataset(dev_cells)
    found = index.assign(file=[Path(p).relative_to(dev_cells).as_posix() for p in index["path"]])
    expected = dev_manifest.assign(subject=dev_manifest["subject"].str.upper())
    assert sorted(found["file"]) == sorted(expected["file"])
    merged = found.merge(expected, on="file", suffixes=("", "_manifest"))
    assert merged["label"].tolist() == merged["class"].tolist()
    assert merged["subject"].tolist() == merged["subject_manifest"].tolist()
    assert set(index["dataset"]) == {"C-NMC"} and set(index["layout"]) == {"folder"}
    assert index["problem"].eq("").all()
    # subjects are pure in class, as in C-NMC
    assert index.groupby("subject")["label"].nunique().max() == 1
    summary = summarize_index(index)
    assert counts(expected) in summary
    for label, cells in expected.groupby("class"): assert f"{label}: {counts(cells)}" in summary


def test_dev_cells_validate(dev_cells, dev_manifest):
    report = validate_images(index_dataset(dev_cells))
    assert report.n_checked == len(report.clean) == len(dev_manifest) and len(report.problems) == 0


def test_dev_cells_splits(dev_cells):
    index = index_dataset(dev_cells)
    subject = make_split(index, "subject", seed=0)
    assert_no_shared_subjects(subject)
    assert leakage_report(subject)["shared_subjects"] == 0
    paper = make_split(index, "paper", seed=0)
    test = paper[paper["split"].eq("test")]
    # stratified by class, 30% of the images: each class's test count within rounding (two cells) of its share
    for label, cells in paper.groupby("label"):
        assert abs(test["label"].eq(label).sum() - 0.3 * len(cells)) <= 2
    assert abs(len(test) - 0.3 * len(paper)) <= 1
    # the paper's image-level split puts nearly every test cell next to cells of the same patient
    trained = set(paper.loc[paper["split"].ne("test"), "subject"])
    assert leakage_report(paper)["test_fraction_leaked"] == pytest.approx(test["subject"].isin(trained).mean())
    assert leakage_report(paper)["test_fraction_leaked"] > 0.9


def test_synthetic_indexes_like_kaggle(synthetic_cnmc):
    index = index_dataset(synthetic_cnmc)
    assert set(index["layout"]) == {"kaggle"} and set(index["dataset"]) == {"synthetic"}
    assert set(index["source_split"]) == {"fold_0", "fold_1", "fold_2", "prelim", "final"}
    assert index.loc[index["source_split"].eq("final"), "label"].eq("").all()
    assert index.loc[index["source_split"].ne("final"), "subject"].ne("").all()
    # rooted at the C-NMC_Leukemia folder itself, the same table comes out
    inner = index_dataset(synthetic_cnmc/"C-NMC_Leukemia")
    assert inner.drop(columns="path").equals(index.drop(columns="path"))


@pytest.mark.parametrize("protocol", ["paper", "subject", "official"])
def test_split_is_deterministic(synthetic_cnmc, protocol):
    index = index_dataset(synthetic_cnmc)
    first, again = make_split(index, protocol, seed=5), make_split(index, protocol, seed=5)
    assert first[["path", "split"]].equals(again[["path", "split"]])
    assert set(first["split"]) == {"train", "val", "test"}


def test_the_committed_sample_is_small_real_and_as_recorded():
    "tests/data/cnmc-sample: at most 48 PNG cells of 8 or more patients of both classes, under 2 MB, as recorded."
    import hashlib
    import pandas as pd
    from PIL import Image
    from conftest import FULL_DEV_CELLS, SAMPLE_CELLS
    manifest = pd.read_csv(SAMPLE_CELLS/"MANIFEST.csv", dtype=str, keep_default_na=False)
    files = sorted(p.relative_to(SAMPLE_CELLS).as_posix() for p in SAMPLE_CELLS.glob("*/*") if p.is_file())
    assert files == sorted(manifest["file"]) and len(files) <= 48
    assert manifest["subject"].nunique() >= 8 and set(manifest["class"]) == {"all", "hem"}
    assert manifest.groupby("subject")["class"].nunique().max() == 1
    assert sum(p.stat().st_size for p in SAMPLE_CELLS.rglob("*") if p.is_file()) <= 2_000_000
    for file, sha in zip(manifest["file"], manifest["sha256_png"]):
        assert hashlib.sha256((SAMPLE_CELLS/file).read_bytes()).hexdigest() == sha, file
        assert Image.open(SAMPLE_CELLS/file).format == "PNG"  # lossless
    readme = (SAMPLE_CELLS/"README.md").read_text()
    assert "CC BY 3.0" in readme and "https://doi.org/10.7937/tcia.2019.dc64i46r" in readme  # licence and citation
    if (FULL_DEV_CELLS/"MANIFEST.csv").is_file():  # on the developers' machines: the same rows as the full set's
        full = pd.read_csv(FULL_DEV_CELLS/"MANIFEST.csv", dtype=str, keep_default_na=False).set_index("file")
        assert full.loc[manifest["file"]].reset_index().equals(manifest)
