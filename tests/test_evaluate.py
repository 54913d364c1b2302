"""Evaluation (04_evaluate), the tables (04a_tables) and the report (05_figures): metrics against scikit-learn,
subject bootstrap, McNemar, figures and tables, a folder with bad files, and papermill runs of 04_evaluate and
05_figures on tiny synthetic runs."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from bloodcancer.data import SYNTHETIC_MARKER, index_dataset, load_split, make_split, make_synthetic_cnmc, save_split
from bloodcancer.evaluate import (RunFolderError, evaluate_predictions, evaluate_run, plot_confusion, plot_examples,
                                  plot_roc)
from bloodcancer.metrics import METRICS, bootstrap_intervals, compute_metrics, mcnemar, resample_weights
from bloodcancer.figures import plot_accuracy, plot_confusion_vs_paper, plot_metrics
from bloodcancer.predict import load_predictor
from bloodcancer.runs import RunFolder
from bloodcancer.models import PAPER_MODELS
from bloodcancer.tables import PAPER_CONFUSION, PAPER_TABLE1, format_table1, paper_row, table1

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_outputs(tmp_path_factory):
    """Three tiny real runs (`bloodcancer.demo.tiny_run`, copied so that evaluations stay here): AlexNet under the
    paper and the subject split, EfficientNetB0 under the paper split."""
    from bloodcancer.demo import tiny_run
    outputs = tmp_path_factory.mktemp("evaluate")/"outputs"
    runs = {}
    for key, (split, model) in {"paper": ("paper", "AlexNet"), "subject": ("subject", "AlexNet"),
                                "other": ("paper", "EfficientNetB0")}.items():
        runs[key] = Path(shutil.copytree(tiny_run(model, split), outputs/split/model))
    return outputs, runs


def hand_made(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    prob = np.clip(np.round(0.5 * y + rng.normal(0.25, 0.25, 200), 2), 0, 1)  # rounded: ties in the scores
    return y, prob


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_each_metric_matches_scikit_learn(seed, threshold):
    y, prob = hand_made(seed)
    called = (prob >= threshold).astype(int)
    expected = dict(accuracy=skm.accuracy_score(y, called), precision=skm.precision_score(y, called),
                    recall=skm.recall_score(y, called), specificity=skm.recall_score(y, called, pos_label=0),
                    f1=skm.f1_score(y, called), f1_hem=skm.f1_score(y, called, pos_label=0),
                    macro_f1=skm.f1_score(y, called, average="macro"),
                    weighted_f1=skm.f1_score(y, called, average="weighted"),
                    balanced_accuracy=skm.balanced_accuracy_score(y, called), roc_auc=skm.roc_auc_score(y, prob))
    mine = compute_metrics(np.where(y == 1, "all", "hem"), prob, threshold)
    assert set(expected) == set(METRICS)
    for name in METRICS: assert mine[name] == pytest.approx(expected[name], abs=1e-12), name
    tn, fp, fn, tp = skm.confusion_matrix(y, called).ravel()
    assert (mine["tp"], mine["fp"], mine["fn"], mine["tn"], mine["n_images"]) == (tp, fp, fn, tn, 200)


def test_bootstrap_covers_the_known_value_and_resamples_subjects():
    rng = np.random.default_rng(7)
    n_subjects, cells = 80, 30
    subjects = np.repeat([f"S{i}" for i in range(n_subjects)], cells)
    labels = np.repeat(rng.integers(0, 2, n_subjects), cells)
    skill = np.repeat(np.clip(rng.normal(0.85, 0.12, n_subjects), 0, 1), cells)
    right = rng.random(len(subjects)) < skill
    prob = np.where(right == (labels == 1), 0.8, 0.2)
    true_accuracy = 0.85  # the population's; the sample's is right.mean()
    by_subject = bootstrap_intervals(labels, prob, subjects, n_boot=1000, seed=1)
    low, high = by_subject["intervals"]["accuracy"]
    assert low <= true_accuracy <= high and low <= right.mean() <= high
    assert by_subject["unit"] == "subject" and by_subject["n_units"] == n_subjects
    by_image = bootstrap_intervals(labels, prob, None, n_boot=1000, seed=1)
    assert by_image["unit"] == "image" and by_image["n_units"] == len(subjects)
    assert high - low > 1.5 * np.subtract(*by_image["intervals"]["accuracy"][::-1])
    # a replicate draws whole subjects: all cells of a subject get the same weight; classes keep their subject counts
    weights = resample_weights(subjects, 50, seed=0, strata=labels)
    assert pd.DataFrame(weights.T).groupby(subjects).nunique().to_numpy().max() == 1
    per_subject = weights[:, ::cells]
    for label in (0, 1):
        assert (per_subject[:, labels[::cells] == label].sum(1) == (labels[::cells] == label).sum()).all()
    # an empty subject anywhere falls back to resampling images
    assert bootstrap_intervals(labels, prob, np.append(subjects[:-1], ""), n_boot=50)["unit"] == "image"


def test_mcnemar_by_hand():
    truth = np.ones(60, int)
    a = np.r_[np.ones(20), np.zeros(5), np.ones(35)].astype(int)
    b = np.r_[np.zeros(20), np.ones(5), np.ones(35)].astype(int)
    result = mcnemar(truth, a, b)
    assert (result["only_a_right"], result["only_b_right"], result["both_right"]) == (20, 5, 35)
    assert result["method"] == "chi-squared with continuity correction"
    assert result["statistic"] == pytest.approx((20 - 5 - 1) ** 2 / 25)
    exact = mcnemar(truth, a, b, exact=True)
    from scipy.stats import binomtest
    assert exact["p_value"] == pytest.approx(binomtest(5, 25, 0.5).pvalue)


def test_figures_carry_titles_and_labels_and_are_written(tmp_path, synthetic_cnmc):
    cells = index_dataset(synthetic_cnmc)
    cells = cells[cells["label"].ne("")].groupby("label").head(10)
    rng = np.random.default_rng(0)
    probability = np.clip(cells["label"].eq("all") * 0.5 + rng.random(len(cells)) * 0.6, 0, 1)
    predictions = cells[["path", "subject", "label"]].assign(probability=probability)
    counts = compute_metrics(predictions["label"], predictions["probability"])
    fig = plot_confusion(counts, "Confusion matrix, X\nSYNTHETIC cells (not C-NMC)")
    assert fig._suptitle.get_text().startswith("Confusion matrix, X") and "SYNTHETIC" in fig._suptitle.get_text()
    assert [(ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes] == [
        ("Counts", "Predicted label", "True label"), ("Normalised by true class", "Predicted label", "True label")]
    fig = plot_roc(predictions["label"], predictions["probability"], "ROC, X")
    assert fig.axes[0].get_title() == "ROC, X" and fig.axes[0].get_xlabel().startswith("False positive rate")
    called = predictions.assign(prediction=np.where(predictions["probability"] >= 0.5, "all", "hem"))
    fig = plot_examples(called, "Examples, X")
    assert fig._suptitle.get_text() == "Examples, X"
    assert [ax.get_ylabel() for ax in fig.axes[::6]] == ["correct", "wrong"]

    metrics = evaluate_predictions(predictions, tmp_path/"eval", model="X", dataset="synthetic", split="subject",
                                   n_boot=100)
    for name in ("predictions.csv", "metrics.json", "classification_report.txt", "confusion_matrix.png", "roc.png",
                 "examples.png"):
        assert (tmp_path/"eval"/name).stat().st_size > 0, name
    assert metrics["data_description"].startswith("SYNTHETIC cells (not C-NMC)")
    assert "subject split" in metrics["data_description"]
    assert json.loads((tmp_path/"eval"/"metrics.json").read_text())["accuracy"] == pytest.approx(metrics["accuracy"])

    made_up = pd.DataFrame([dict(run="", model=m, dataset="synthetic", split="paper", created="", learning_rate=1e-3,
                                 batch_size=40, image_size=224, accuracy=90.0, accuracy_low=85.0, accuracy_high=95.0,
                                 recall=80.0, f1=85.0, recall_low=1, recall_high=1, f1_low=1, f1_high=1, n_images=10)
                            for m in ("VGG19", "AlexNet")])
    table = table1(made_up, "synthetic")
    fig = plot_accuracy(table)
    assert fig.axes[0].get_title().startswith("Fig. 12 reproduced")
    assert "SYNTHETIC cells (not C-NMC)" in fig.axes[0].get_title()
    assert fig.axes[0].get_ylabel() == "Accuracy (%)"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(PAPER_TABLE1)
    fig = plot_metrics(table)
    assert fig._suptitle.get_text().startswith("Fig. 13 reproduced") and "paper split" in fig._suptitle.get_text()
    fig = plot_confusion_vs_paper("ResNetRS50", counts, "synthetic", "paper")
    assert fig._suptitle.get_text().startswith("Fig. 15 reproduced: confusion matrix of ResNetRS50")
    paper = PAPER_CONFUSION["ResNetRS50"]
    assert sorted(t.get_text() for t in fig.axes[1].texts) == sorted(str(paper[k]) for k in ("tp", "tn", "fn", "fp"))


def test_table1_pairs_every_model_with_its_own_paper_numbers():
    registry = list(PAPER_MODELS)
    made_up = pd.DataFrame([dict(run=f"/r/{m}", model=m, dataset="C-NMC", split="paper", created="", learning_rate=1e-3,
                                 batch_size=40, image_size=224, accuracy=50.0 + i, recall=60.0 + i, f1=70.0 + i,
                                 n_images=1,
                                 **{f"{k}_{s}": 0.0 for k in ("accuracy", "recall", "f1") for s in ("low", "high")})
                            for i, m in enumerate(registry)])
    table = table1(made_up.sample(frac=1, random_state=0), "C-NMC")  # the order of the runs must not matter
    assert table["Algorithm"].tolist() == list(PAPER_TABLE1)
    for row in table.itertuples():
        assert paper_row(row.model) == row.Algorithm
        assert [row.paper_accuracy, row.paper_recall, row.paper_f1] == list(PAPER_TABLE1[row.Algorithm].values())
        i = registry.index(row.model)
        assert [row.ours_accuracy, row.ours_recall, row.ours_f1] == [50.0 + i, 60.0 + i, 70.0 + i]
    readable = format_table1(table).set_index("Algorithm")
    # ours [95% interval] (paper); these made-up runs have zero-width intervals
    assert readable.loc["Convnext", "Model (ours)"] == "ConvNeXtTiny"
    assert readable.loc["Convnext", "Accuracy"] == "53.0 [0.0, 0.0] (94.2)"
    assert readable.loc["RegNetX016", "Accuracy"] == "51.0 [0.0, 0.0] (96.4)"
    assert readable.loc["EfficientNet", "F1 Score"] == "74.0 [0.0, 0.0] (91)"
    # synthetic runs never appear in a C-NMC table
    assert table1(made_up.assign(dataset="synthetic"), "C-NMC")["model"].eq("").all()


def test_evaluating_a_folder_with_bad_files_reports_them_and_scores_the_rest(tiny_outputs, tmp_path):
    _, runs = tiny_outputs
    run = runs["paper"]
    split = load_split(run)
    test = split[split["split"].eq("test")].groupby("label").head(4)
    folder = tmp_path/"new cells"
    for row in test.itertuples():
        (folder/row.label).mkdir(parents=True, exist_ok=True)
        shutil.copy(row.path, folder/row.label)
    (folder/SYNTHETIC_MARKER).write_text("{}")
    (folder/"all"/"UID_90_1_1_all.bmp").write_bytes(b"")
    (folder/"hem"/"UID_H90_1_1_hem.bmp").write_bytes(b"plain text, not an image")
    good = folder/"hem"/Path(test.loc[test["label"].eq("hem"), "path"].iloc[-1]).name
    (folder/"hem"/"UID_H91_1_1_hem.png").write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    evaluation = evaluate_run(run, folder, n_boot=100, figures=False)
    assert evaluation.folder == run/"eval"/"new-cells"
    assert sorted(evaluation.problems["reason"]) == ["empty file", "not an image", "truncated or corrupt"]
    metrics = json.loads((evaluation.folder/"metrics.json").read_text())
    assert metrics["n_images"] == len(test) == len(evaluation.predictions) and metrics["n_problems"] == 3
    assert sorted(Path(p["path"]).name for p in metrics["problems"]) == [
        "UID_90_1_1_all.bmp", "UID_H90_1_1_hem.bmp", "UID_H91_1_1_hem.png"]
    assert metrics["dataset"] == "synthetic" and metrics["data_name"] == "new-cells"
    assert metrics["overlap"]["images_seen_in_training"] == 0
    assert "folder 'new-cells'" in repr(evaluation) and "3 files left out" in repr(evaluation)


def test_evaluate_run_explains_what_is_missing(tiny_outputs, tmp_path):
    with pytest.raises(RunFolderError, match="is not a run folder"): evaluate_run(tmp_path)
    _, runs = tiny_outputs
    partial = tmp_path/"partial"
    shutil.copytree(runs["paper"], partial, ignore=shutil.ignore_patterns("model.keras", "eval"))
    with pytest.raises(RunFolderError, match="has no model.keras"): evaluate_run(partial)
    with pytest.raises(RunFolderError, match="has no model.keras") as refused: load_predictor(partial)
    assert "best weights" not in str(refused.value)
    RunFolder(partial).best_arrays_file.write_bytes(b"")  # an unfinished run keeps its best weights so far
    with pytest.raises(RunFolderError, match="best weights so far are saved: resume"): load_predictor(partial)
    moved = tmp_path/"moved"
    shutil.copytree(runs["paper"], moved, ignore=shutil.ignore_patterns("eval"))
    split = load_split(moved)
    data_folder = str(Path(split["path"].iloc[0]).parents[4])
    split.assign(path=split["path"].str.replace(data_folder, "/elsewhere")).to_csv(moved/"split.csv", index=False)
    with pytest.raises(FileNotFoundError, match="are not on this machine"): evaluate_run(moved)
    (tmp_path/"unlabelled").mkdir()
    shutil.copy(load_split(runs["paper"])["path"].iloc[0], tmp_path/"unlabelled")
    with pytest.raises(ValueError, match="no labelled image"):
        evaluate_run(runs["paper"], tmp_path/"unlabelled", figures=False)


def test_papermill_runs_04_then_05_on_tiny_synthetic_runs(tiny_outputs, tmp_path):
    import papermill as pm
    outputs, runs = tiny_outputs
    kwargs = dict(kernel_name="python3", cwd=str(ROOT/"nbs"), progress_bar=False)
    pm.execute_notebook(str(ROOT/"nbs"/"04_evaluate.ipynb"), str(tmp_path/"04.ipynb"),
                        parameters=dict(run=str(runs["paper"]), n_boot=200), **kwargs)
    test_eval = runs["paper"]/"eval"/"test"
    for name in ("predictions.csv", "metrics.json", "classification_report.txt", "confusion_matrix.png", "roc.png",
                 "examples.png"):
        assert (test_eval/name).stat().st_size > 0, name
    metrics = json.loads((test_eval/"metrics.json").read_text())
    described = (metrics["dataset"], metrics["split"], metrics["data_name"], metrics["model"])
    assert described == ("synthetic", "paper", "test", "AlexNet")
    assert metrics["bootstrap"]["unit"] == "subject" and metrics["n_subjects"] > 1
    split = load_split(runs["paper"])
    assert metrics["n_images"] == int(split["split"].eq("test").sum())

    # 05 evaluates the two runs that have no evaluation yet, then writes the report
    pm.execute_notebook(str(ROOT/"nbs"/"05_figures.ipynb"), str(tmp_path/"05.ipynb"),
                        parameters=dict(outputs=str(outputs)), **kwargs)
    report = outputs/"report"/"synthetic"
    for name in ("table1.csv", "table1.md", "table1.tex", "fig12_accuracy.png", "fig13_metrics.png", "leakage.csv",
                 "leakage.md", "leakage.png", "mcnemar.json"):
        assert (report/name).stat().st_size > 0, name
    assert (runs["subject"]/"eval"/"test"/"metrics.json").is_file()
    assert (runs["other"]/"eval"/"test"/"metrics.json").is_file()
    table = pd.read_csv(report/"table1.csv").fillna({"model": ""}).set_index("Algorithm")
    assert table.loc["AlexNet", "ours_accuracy"] == pytest.approx(100 * metrics["accuracy"])
    assert table.loc["EfficientNet", "model"] == "EfficientNetB0" and table.loc["ResNetRS50", "model"] == ""
    assert set(table["dataset"]) == {"synthetic"} and set(table["split"]) == {"paper"}
    assert "SYNTHETIC cells (not C-NMC)" in (report/"table1.md").read_text()
    leakage = pd.read_csv(report/"leakage.csv")
    assert leakage["model"].tolist() == ["AlexNet"]
    gap = leakage["paper_accuracy"].iloc[0] - leakage["subject_accuracy"].iloc[0]
    assert leakage["accuracy_gap"].iloc[0] == pytest.approx(gap)
    mc = json.loads((report/"mcnemar.json").read_text())
    paper_test = next(t for t in mc if t["split"] == "paper")
    assert {paper_test["model_a"], paper_test["model_b"]} == {"AlexNet", "EfficientNetB0"}
    assert 0 <= paper_test["p_value"] <= 1
    assert (outputs/"report"/"report.md").read_text().count("SYNTHETIC") >= 3


def test_patient_calls_on_a_constructed_table(tmp_path):
    from bloodcancer.metrics import subject_calls, subject_metrics
    cells = pd.DataFrame({"subject": ["7", "7", "7", "8", "8", "H3", "H3", "H4", "H4", "", ""],
                          "label": ["all"] * 5 + ["hem"] * 6,
                          "probability": [0.9, 0.4, 0.35, 0.45, 0.1, 0.2, 0.7, 0.6, 0.55, 0.99, 0.98]})
    calls = subject_calls(cells, threshold=0.5).set_index("subject")
    # means 0.55, 0.275, 0.45, 0.575
    assert calls["call"].to_dict() == {"7": "all", "8": "hem", "H3": "hem", "H4": "all"}
    assert calls.loc["7", "share_called_all"] == pytest.approx(1 / 3) and calls["n_images"].sum() == 9
    summary = subject_metrics(calls.reset_index())
    assert summary["n_subjects_scored"] == 4
    assert (summary["subject_accuracy"], summary["subject_balanced_accuracy"]) == (0.5, 0.5)
    metrics = evaluate_predictions(cells.assign(path=[f"/nowhere/{i}.bmp" for i in range(len(cells))]), tmp_path/"eval",
                                   dataset="synthetic", n_boot=50, figures=False)
    assert (metrics["subject_accuracy"], metrics["subject_balanced_accuracy"]) == (0.5, 0.5)
    assert metrics["n_subjects_scored"] == 4
    assert metrics["n_cells_without_subject"] == 2 and metrics["bootstrap"]["cells_as_own_unit"] == 2
    assert metrics["bootstrap"]["n_units"] == 4 + 2  # four patients and two cells of their own
    saved = json.loads((tmp_path/"eval"/"metrics.json").read_text())
    assert saved["ece_bins"] == 15 and saved["ece"] == pytest.approx(metrics["ece"])
    assert [c["subject"] for c in saved["subject_calls"]] == ["8", "7", "H3", "H4"]


def test_ece_and_temperature_on_constructed_scores():
    from bloodcancer.metrics import (apply_temperature, expected_calibration_error, fit_temperature,
                                     negative_log_likelihood)
    rng = np.random.default_rng(3)
    p = rng.uniform(0.001, 0.999, 50_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.015  # perfectly calibrated up to sampling noise
    logit = np.log(p / (1 - p))
    overconfident = 1 / (1 + np.exp(-3 * logit))
    t = fit_temperature(y, overconfident)
    assert t == pytest.approx(3, rel=0.05)
    scaled = apply_temperature(overconfident, t)
    assert negative_log_likelihood(y, scaled) < negative_log_likelihood(y, overconfident)
    assert expected_calibration_error(y, scaled) < 0.015 < expected_calibration_error(y, overconfident)
    assert np.array_equal(apply_temperature(overconfident, 1.0), overconfident)
    assert skm.roc_auc_score(y, scaled) == pytest.approx(skm.roc_auc_score(y, overconfident))  # order kept
    # saturated scores (exactly 0 and 1, often wrong) give a finite T > 1 and a finite NLL
    saturated = np.where(rng.uniform(size=200) < 0.8, y[:200], 1 - y[:200]).astype(float)
    t_saturated = fit_temperature(y[:200], saturated)
    assert 1 < t_saturated < 20
    assert np.isfinite(negative_log_likelihood(y[:200], apply_temperature(saturated, t_saturated)))


def test_evaluation_settings_out_of_range_write_nothing(tmp_path, tiny_outputs):
    predictions = pd.DataFrame({"path": ["/a.bmp", "/b.bmp"], "subject": ["1", "H1"], "label": ["all", "hem"],
                                "probability": [0.8, 0.1]})
    for setting, message in ((dict(threshold=2.0), "threshold=2.0 is not a probability"), (dict(n_boot=0), "n_boot=0"),
                             (dict(confidence=95), "confidence=95"), (dict(threshold=-0.1), r"in \[0, 1\]")):
        with pytest.raises(ValueError, match=message): evaluate_predictions(predictions, tmp_path/"eval", **setting)
    assert not (tmp_path/"eval").exists()
    _, runs = tiny_outputs
    with pytest.raises(ValueError, match="threshold=2 is not a probability"): evaluate_run(runs["paper"], threshold=2)


def test_labelled_cells_without_subject_ids_are_scored(tiny_outputs, tmp_path):
    _, runs = tiny_outputs
    run = runs["subject"]
    split = load_split(run)
    test = split[split["split"].eq("test")].groupby("label").head(3).reset_index(drop=True)
    folder = tmp_path/"our lab"
    for i, row in test.iterrows():
        (folder/row.label).mkdir(parents=True, exist_ok=True)
        shutil.copy(row.path, folder/row.label/(f"smear-{i}.bmp" if i % 2 == 0 else Path(row.path).name))
    (folder/"all"/"smear-broken.bmp").write_bytes(b"")
    evaluation = evaluate_run(run, folder, n_boot=100, figures=True)
    unnamed = evaluation.predictions["path"].map(lambda p: Path(p).name.startswith("smear-"))
    metrics = json.loads((evaluation.folder/"metrics.json").read_text())
    assert metrics["n_images"] == len(test) and metrics["n_cells_without_subject"] == int(unnamed.sum()) == 3
    assert metrics["dataset"] == "folder"  # no synthetic marker copied, not every name a C-NMC name: said as it is
    assert metrics["n_subjects_scored"] == metrics["n_subjects"] == test.loc[test.index % 2 == 1, "subject"].nunique()
    assert metrics["bootstrap"]["n_units"] == metrics["n_subjects"] + 3
    assert [Path(p["path"]).name for p in metrics["problems"]] == ["smear-broken.bmp"]
    assert "3 of the images have no subject id" in repr(evaluation)
    for name in ("subjects.png", "reliability.png"): assert (evaluation.folder/name).stat().st_size > 0, name


def test_a_missing_notebook_template_is_named_with_its_fix(monkeypatch, tmp_path):
    "Without nbconvert's `lab` template (a site without its data files) the report says what is missing and the fix."
    import nbconvert.exporters.templateexporter as templates
    from bloodcancer.core import MissingFileError
    from bloodcancer.figures import _html_exporter
    monkeypatch.setattr(templates, "jupyter_path", lambda *parts: [str(tmp_path/"empty")])
    with pytest.raises(MissingFileError) as raised:
        _html_exporter()
    message = str(raised.value)
    assert "'lab' template" in message and str(tmp_path/"empty") in message and "JUPYTER_PATH" in message
    assert "Traceback" not in message


def test_evaluate_notebook_parameters_are_evaluate_runs_defaults():
    "The papermill parameters of 04_evaluate restate evaluate_run's defaults: `reproduce` scores as `evaluate` does."
    import ast, inspect, json
    from pathlib import Path
    notebook = json.loads((Path(__file__).parent.parent/"nbs"/"04_evaluate.ipynb").read_text())
    cell = next(c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    given = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse("".join(cell["source"])).body}
    defaults = {k: p.default for k, p in inspect.signature(evaluate_run).parameters.items()
                if p.default is not inspect.Parameter.empty and k != "predictor"}
    assert {k: given[k] for k in defaults} == defaults
