"""Unseen patients (issue 13): subject k-fold cross-validation partitions the patients and scores every cell once
out-of-fold; a subject split's validation part holds both classes when the data allows, and says so when it cannot;
recipes resolve into config.json; a split file is trained as given."""
import json
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest

from bloodcancer.config import RECIPES, TrainConfig
from bloodcancer.data import index_dataset, make_split, make_synthetic_cnmc


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    "A 3-fold subject cross-validation of AlexNet on the tiny synthetic C-NMC, robust recipe but a cosine schedule."
    from bloodcancer.demo import tiny_cnmc
    from bloodcancer.evaluate import evaluate_run
    from bloodcancer.train import train_folds
    outputs = tmp_path_factory.mktemp("cv")
    folds = train_folds(model="AlexNet", data=str(tiny_cnmc()), split="subject", folds=3, image_size=32, batch_size=8,
                        epochs=2, weights="none", seed=0, outputs=str(outputs), denoise="none", verbose=0,
                        recipe="robust", schedule="cosine")
    return folds, evaluate_run(folds[0].parent, n_boot=50, figures=False)


def test_folds_partition_the_patients_and_every_cell_is_scored_once(cv_run):
    from bloodcancer.demo import tiny_cnmc
    folds, pooled = cv_run
    splits = [pd.read_csv(f/"split.csv", dtype=str, keep_default_na=False) for f in folds]
    tested = [set(s.loc[s["split"].eq("test"), "subject"]) for s in splits]
    assert all(not (a & b) for i, a in enumerate(tested) for b in tested[i + 1:])  # disjoint
    index = index_dataset(tiny_cnmc())
    labelled = index[index["label"].isin(["all", "hem"]) & index["source_split"].str.startswith("fold")]
    assert set().union(*tested) == set(labelled["subject"])  # every patient tested once
    for split in splits:  # no patient on two sides within a fold
        assert split.groupby("subject")["split"].nunique().max() == 1
    scored = pooled.predictions["path"]
    assert scored.is_unique and set(scored) == set(labelled["path"])  # every cell scored once, out-of-fold
    metrics = pooled.metrics
    described = (metrics["data_name"], metrics["split"], metrics["folds"], metrics["n_images"])
    assert described == ("oof", "subject", 3, len(labelled))
    assert len(metrics["per_fold"]) == 3 and set(metrics["fold_spread"]) >= {"accuracy", "roc_auc"}
    assert metrics["recipe"] == "robust" and metrics["bootstrap"]["unit"] == "subject"
    assert (folds[0].parent/"eval"/"oof"/"folds.csv").is_file()


def test_a_fold_records_its_recipe_resolved(cv_run):
    folds, _ = cv_run
    config = json.loads((folds[0]/"config.json").read_text())
    assert (config["recipe"], config["folds"], config["fold"]) == ("robust", 3, 1)
    for name, value in RECIPES["robust"].items():
        assert config[name] == ("cosine" if name == "schedule" else value), name  # a field given explicitly wins
    history = pd.read_csv(folds[0]/"history.csv")
    assert history["lr"].iloc[-1] < history["lr"].iloc[0]  # the cosine schedule lowered the rate


def test_subject_validation_holds_both_classes_when_the_data_allows(tmp_path):
    data = make_synthetic_cnmc(tmp_path/"d", subjects_all=9, subjects_hem=9, cells_per_subject=15, image_size=48,
                               seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # enough subjects of each class: no warning
        split = make_split(index_dataset(data), "subject", seed=3)
    validation = split[split["split"].eq("val")]
    assert validation.groupby("label")["subject"].nunique().to_dict() == {"all": 2, "hem": 2}
    counts = validation["label"].value_counts()
    assert counts.max() <= 2 * counts.min()  # balanced as far as whole subjects allow


def test_thin_validation_is_announced_with_the_numbers(tmp_path):
    data = make_synthetic_cnmc(tmp_path/"d", subjects_all=3, subjects_hem=3, cells_per_subject=4, image_size=48, seed=1)
    with pytest.warns(UserWarning, match=r"thin or lopsided \(hem: \d+ cells of 1 subject"):
        split = make_split(index_dataset(data), "subject", seed=0)
    assert set(split.loc[split["split"].eq("val"), "label"]) == {"all", "hem"}


def test_real_cells_validation_has_both_classes(dev_cells):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = make_split(index_dataset(dev_cells), "subject", seed=42)
    validation = split[split["split"].eq("val")]
    assert set(validation["label"]) == {"all", "hem"}


def test_training_with_a_split_file_uses_it_as_given(tmp_path):
    from bloodcancer.demo import tiny_cnmc
    from bloodcancer.train import train
    given = make_split(index_dataset(tiny_cnmc()), "subject", seed=5)
    given.to_csv(tmp_path/"my-split.csv", index=False)
    run = train(model="AlexNet", data=str(tiny_cnmc()), image_size=32, batch_size=8, epochs=1, weights="none",
                outputs=str(tmp_path/"out"), denoise="none", verbose=0, split_file=str(tmp_path/"my-split.csv"))
    used = pd.read_csv(run/"split.csv", dtype=str, keep_default_na=False)
    assert used[["path", "split"]].values.tolist() == given[["path", "split"]].values.tolist()
    broken = given.drop(columns="subject")
    broken.to_csv(tmp_path/"broken.csv", index=False)
    with pytest.raises(ValueError, match="has no subject column"):
        train(model="AlexNet", data=str(tiny_cnmc()), image_size=32, epochs=1, weights="none",
              outputs=str(tmp_path/"o2"), split_file=str(tmp_path/"broken.csv"))


def test_a_fold_needs_a_subject_split_and_a_fold_number():
    with pytest.raises(ValueError, match="needs split='subject'"): TrainConfig(folds=3)
    from bloodcancer.train import train
    with pytest.raises(ValueError, match="choose the fold to train"): train(split="subject", folds=3)


def test_folds_of_different_assignments_are_not_pooled(cv_run, tmp_path):
    "A fold whose test side overlaps another's, or leaves cells untested, is refused with the counts."
    from bloodcancer.evaluate import evaluate_folds
    from bloodcancer.runs import RunFolderError
    folds, _ = cv_run
    mixed = Path(shutil.copytree(folds[0].parent, tmp_path/"AlexNet"))
    first = pd.read_csv(mixed/"fold-1"/"split.csv", dtype=str, keep_default_na=False)
    second = pd.read_csv(mixed/"fold-2"/"split.csv", dtype=str, keep_default_na=False)
    moved = first.loc[first["split"].eq("test"), "path"].iloc[:2]  # two of fold 1's test cells, tested by fold 2 too
    second.loc[second["path"].isin(moved), "split"] = "test"
    second.to_csv(mixed/"fold-2"/"split.csv", index=False)
    with pytest.raises(RunFolderError, match="2 tested by more than one fold, 0 by none"): evaluate_folds(mixed)
    first.loc[first["path"].isin(moved), "split"] = "train"  # now tested by fold 2 only: a partition again
    first.to_csv(mixed/"fold-1"/"split.csv", index=False)
    third = pd.read_csv(mixed/"fold-3"/"split.csv", dtype=str, keep_default_na=False)
    third.loc[third.index[third["split"].eq("test")][:1], "split"] = "train"
    third.to_csv(mixed/"fold-3"/"split.csv", index=False)
    with pytest.raises(RunFolderError, match="0 tested by more than one fold, 1 by none"): evaluate_folds(mixed)
