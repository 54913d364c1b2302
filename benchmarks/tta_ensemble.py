"""Test-time augmentation and ensembles on real C-NMC cells: weighted F1 without and with TTA, single runs and their ensemble.

Trains `--seeds` runs from scratch (no ImageNet weights) on the training side of one subject-disjoint split of the
real development cells (no patient on two sides), each written as a run folder
(model.keras, config.json, split.csv), then predicts the held-out test cells through `bloodcancer.predict`:
  - each run alone, without and with TTA (the 8 flips and rotations of the square, probabilities averaged);
  - the soft-voting ensemble of all runs, without and with TTA;
at the default threshold 0.5 and at the threshold chosen on the validation cells (Youden's J) predicted the same way.
Weighted F1 is scikit-learn's `f1_score(average="weighted")`, the paper's headline metric.

The model is the registry's AlexNet with the paper's head, trained from scratch by `bloodcancer.train.train` itself
(the paper's recipe: Adamax, class weights, augmentation, early stopping on the validation loss) on the split below,
given as a split file (`TrainConfig.split_file`). At a CPU-friendly size these numbers measure what TTA and
ensembling add, not the paper's models.

The split is fold `--fold` of a 3-fold subject split (`make_split(index, "subject", n_folds=3, fold=2)`). The
development cells are lopsided by patient: two normal donors hold 790 of the 813 hem cells and one ALL patient 757
of the 1,825 all cells. The default subject holdout (= fold 0) therefore tests on 757 cells of that one patient and
23 hem cells; fold 2 tests on one large normal donor and four ALL patients (531 all / 385 hem), with the other large
donor in training. Its validation side has few hem cells (9), so the validation-chosen threshold is fragile.

Usage: python benchmarks/tta_ensemble.py [--data PATH] [--image-size 64] [--epochs 12] [--seeds 0 1 2] [--keep FOLDER]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/"benchmarks"))
from _common import cells_folder  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="Folder of cells (all/ and hem/ subfolders); relative paths are "
                        "resolved from the repository root. Defaults to $BLOODCANCER_DEV_CELLS or "
                        "../shared/data/cnmc-dev")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="One run per seed (model initialisation and augmentation)")
    parser.add_argument("--split-seed", type=int, default=42, help="Seed of the one subject split all runs share")
    parser.add_argument("--folds", type=int, default=3, help="Subject folds of the split")
    parser.add_argument("--fold", type=int, default=2, help="The fold held out for testing")
    parser.add_argument("--keep", default=None, help="Write the run folders here (default: a temporary folder, removed at the end)")
    return parser.parse_args()


def train_run(split_file: Path, outputs: Path, seed: int, args):
    "Train one run with `bloodcancer.train.train` on the given split; return (its folder, training seconds, epochs)."
    from bloodcancer.core import TrainConfig
    from bloodcancer.train import train
    config = TrainConfig(model="AlexNet", data=str(args.data), split="subject", image_size=args.image_size,
                         batch_size=args.batch_size, epochs=args.epochs, learning_rate=args.learning_rate, weights="none",
                         seed=seed, outputs=str(outputs), run_name=f"cnmc-dev-subject-seed{seed}", verbose=0,
                         split_file=str(split_file))
    start = time.perf_counter()
    run = train(config)
    epochs = json.loads((run/"config.json").read_text())["epochs_completed"]
    return run, time.perf_counter() - start, epochs


def main():
    args = parse_args()
    args.data = cells_folder(args.data)
    warnings.filterwarnings("ignore", message=".*trained on synthetic cells")
    import numpy as np
    from sklearn.metrics import f1_score, roc_auc_score
    from bloodcancer.data import index_dataset, leakage_report, make_split
    from bloodcancer.predict import choose_threshold, load_predictor, predict_probabilities, soft_vote
    from bloodcancer.preprocess import labels_of

    index = index_dataset(args.data)
    split = make_split(index, "subject", seed=args.split_seed, n_folds=args.folds, fold=args.fold)
    assert leakage_report(split)["shared_subjects"] == 0
    test = split[split["split"].eq("test")].reset_index(drop=True)
    truth = labels_of(test)
    parts = {part: split[split["split"].eq(part)] for part in ("train", "val", "test")}
    holder = None if args.keep else tempfile.TemporaryDirectory()
    outputs = Path(args.keep or holder.name)
    split_file = outputs/"split.csv"
    split.to_csv(split_file, index=False)  # one split for every seed

    validation = split[split["split"].eq("val")].reset_index(drop=True)
    val_truth = labels_of(validation)
    test_p, val_p, seconds, epochs = {False: [], True: []}, {False: [], True: []}, {}, {}
    total = time.perf_counter()
    for seed in args.seeds:
        run, seconds[seed], epochs[seed] = train_run(split_file, outputs, seed, args)
        predictor = load_predictor(run)
        for tta in (False, True):
            val_p[tta].append(predict_probabilities(predictor, validation, tta=tta, batch_size=64))
            start = time.perf_counter()
            test_p[tta].append(predict_probabilities(predictor, test, tta=tta, batch_size=64))
            seconds[seed, tta] = time.perf_counter() - start
    names = [f"seed {seed}" for seed in args.seeds] + [f"ensemble of {len(args.seeds)}"]
    rows = []  # (name, tta, test probabilities, threshold chosen on the validation probabilities of the same predictor)
    for tta in (False, True):
        for name, p, v in zip(names, test_p[tta] + [soft_vote(test_p[tta])], val_p[tta] + [soft_vote(val_p[tta])]):
            rows.append((name, tta, p, choose_threshold(val_truth, v)["threshold"]))
    rows.sort(key=lambda row: names.index(row[0]))

    def f1(p, t): return f1_score(truth, (p >= t).astype(int), average="weighted")
    counts = lambda frame: f"{len(frame)} cells, {frame['subject'].nunique()} subjects ({int(frame['label'].eq('all').sum())} all / {int(frame['label'].eq('hem').sum())} hem)"
    print(f"Data: {args.data} (real C-NMC cells, dataset={index['dataset'].iloc[0]}); split: subject-disjoint, fold {args.fold} of {args.folds} (make_split 'subject', seed {args.split_seed})")
    for part, frame in parts.items(): print(f"  {part:5s}: {counts(frame)}")
    print(f"Model: registry AlexNet with the paper's head, trained by bloodcancer.train.train from scratch, "
          f"{args.image_size} px, at most {args.epochs} epochs (trained: {epochs}), batch {args.batch_size}, "
          f"Adamax {args.learning_rate:g}; seeds {args.seeds}")
    print("Weighted F1 on the test cells at threshold 0.5, and at the threshold chosen (Youden's J) on the validation cells "
          "predicted the same way (same TTA, same ensemble)")
    print(f"{'run':15s} {'TTA':4s} {'F1@0.5':>7s} {'F1@val-thr':>10s} {'AUC':>6s} {'val-thr':>7s} {'train s':>8s} {'test predict s':>14s}")
    for name, tta, p, t in rows:
        seed = args.seeds[names.index(name)] if name.startswith("seed") else None
        timing = f"{seconds[seed]:8.0f} {seconds[seed, tta]:14.1f}" if seed is not None else ""
        print(f"{name:15s} {'yes' if tta else 'no':4s} {f1(p, 0.5):7.3f} {f1(p, t):10.3f} {roc_auc_score(truth, p):6.3f} {t:7.3f} {timing}".rstrip())
    for label, pick in (("single runs (mean)", lambda rs: np.mean([f for f in rs[:-1]])), ("ensemble", lambda rs: rs[-1])):
        summary = []
        for at in ("0.5", "val-thr"):
            scores = {tta: [f1(p, 0.5 if at == "0.5" else t) for name, rtta, p, t in rows if rtta == tta] for tta in (False, True)}
            summary.append(f"F1@{at} {pick(scores[False]):.3f} -> {pick(scores[True]):.3f}")
        print(f"summary, without -> with TTA, {label}: " + "; ".join(summary))
    print(f"total {time.perf_counter() - total:.0f} s")
    if holder: holder.cleanup()


if __name__ == "__main__":
    main()
