"""The data layer on the real development cells and on the synthetic C-NMC (the notebook 01_data tests the rest)."""
import pytest

from bloodcancer.data import (index_dataset, leakage_report, make_split, summarize_index, validate_images,
                              assert_no_shared_subjects)


def test_dev_cells_index(dev_cells):
    index = index_dataset(dev_cells)
    assert len(index) == 2638
    assert index["subject"].nunique() == 26
    assert int(index["label"].eq("all").sum()) == 1825
    assert set(index["dataset"]) == {"C-NMC"} and set(index["layout"]) == {"folder"}
    assert index["problem"].eq("").all()
    # subjects are pure in class, as in C-NMC
    assert index.groupby("subject")["label"].nunique().max() == 1
    assert "all: 1,825 images, 16 subjects" in summarize_index(index)


def test_dev_cells_validate(dev_cells):
    report = validate_images(index_dataset(dev_cells))
    assert report.n_checked == 2638 and len(report.problems) == 0 and len(report.clean) == 2638


def test_dev_cells_splits(dev_cells):
    index = index_dataset(dev_cells)
    subject = make_split(index, "subject", seed=0)
    assert_no_shared_subjects(subject)
    assert leakage_report(subject)["shared_subjects"] == 0
    paper = make_split(index, "paper", seed=0)
    overall = paper["label"].eq("all").mean()
    test = paper[paper["split"].eq("test")]
    assert abs(test["label"].eq("all").mean() - overall) < 0.02
    assert abs(len(test) / len(paper) - 0.3) < 0.01
    # the paper's image-level split puts nearly every test cell next to cells of the same patient
    assert leakage_report(paper)["test_fraction_leaked"] > 0.95


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
