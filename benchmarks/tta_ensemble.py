"""Test-time augmentation and ensembles on real C-NMC cells: weighted F1 without and with TTA, of runs and ensembles.

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

Rows (one per run and TTA setting, and per ensemble) are appended to benchmarks/results/tta_ensemble-<hardware>.csv.
`--smoke` checks the script in seconds: two runs of one step on tiny synthetic cells at 32 pixels (their F1 means
nothing), rows to `--out` or a temporary folder.

Usage: python benchmarks/tta_ensemble.py [--data PATH] [--image-size 64] [--epochs 12] [--seeds 0 1 2] [--keep FOLDER]
       [--out CSV]
       python benchmarks/tta_ensemble.py --smoke [--out CSV]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/"benchmarks"))
from _common import (append_rows, cells_folder, git_commit, load, output_csv, parse_with_smoke, run_stamp,  # noqa: E402
                     smoke_cells, tensorflow_hardware)

COLUMNS = ["run", "hardware", "data", "split", "model", "image_size", "batch", "epochs_max", "member", "tta",
           "epochs_trained", "test_cells", "f1_at_0_5", "f1_at_val_threshold", "auc", "val_threshold", "train_s",
           "test_predict_s", "load_1min", "note", "commit"]
SMOKE = dict(image_size=32, batch_size=8, epochs=1, steps_per_epoch=1, seeds=[0, 1])  # --smoke's defaults


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="Folder of cells (all/ and hem/ subfolders); relative paths are "
                        "resolved from the repository root. Defaults to $BLOODCANCER_DEV_CELLS or "
                        "../shared/data/cnmc-dev (tiny synthetic cells with --smoke)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--steps-per-epoch", type=int, default=0, help="Training steps per epoch (0: one pass)")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="One run per seed (model initialisation and augmentation)")
    parser.add_argument("--split-seed", type=int, default=42, help="Seed of the one subject split all runs share")
    parser.add_argument("--folds", type=int, default=3, help="Subject folds of the split")
    parser.add_argument("--fold", type=int, default=2, help="The fold held out for testing (from 0)")
    parser.add_argument("--keep", default=None,
                        help="Write the run folders here (default: a temporary folder, removed at the end)")
    parser.add_argument("--out", default=None,
                        help="CSV to append to. Defaults to benchmarks/results/tta_ensemble-<hardware>.csv")
    args = parse_with_smoke(parser, argv, SMOKE)
    return args


def train_run(split_file: Path, outputs: Path, run_name: str, seed: int, args):
    "Train one run with `bloodcancer.train.train` on the given split; return (its folder, training seconds, epochs)."
    from bloodcancer.config import TrainConfig
    from bloodcancer.runs import RunFolder
    from bloodcancer.train import train
    config = TrainConfig(model="AlexNet", data=str(args.data), split="subject", image_size=args.image_size,
                         batch_size=args.batch_size, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                         learning_rate=args.learning_rate, weights="none", seed=seed, outputs=str(outputs),
                         run_name=run_name, verbose=0, split_file=str(split_file))
    start = time.perf_counter()
    run = train(config)
    return run, time.perf_counter() - start, RunFolder(run).read_config()["epochs_completed"]


def main(argv=None):
    args = parse_args(argv)
    args.data = smoke_cells() if args.smoke and args.data is None else cells_folder(args.data)
    warnings.filterwarnings("ignore", message=".*trained on synthetic cells")
    import numpy as np
    from sklearn.metrics import f1_score, roc_auc_score
    from bloodcancer.data import DATASET_LABELS, index_dataset, leakage_report, make_split
    from bloodcancer.predict import choose_threshold, load_predictor, predict_probabilities, soft_vote
    from bloodcancer.preprocess import labels_of

    index = index_dataset(args.data)
    kind = str(index["dataset"].iloc[0])
    split = make_split(index, "subject", seed=args.split_seed, n_folds=args.folds, fold=args.fold)
    assert leakage_report(split)["shared_subjects"] == 0
    test = split[split["split"].eq("test")].reset_index(drop=True)
    truth = labels_of(test)
    parts = {part: split[split["split"].eq(part)] for part in ("train", "val", "test")}
    holder = None if args.keep else tempfile.TemporaryDirectory()
    outputs = Path(args.keep or holder.name)
    outputs.mkdir(parents=True, exist_ok=True)
    split_file = outputs/"split.csv"
    split.to_csv(split_file, index=False)  # one split for every seed
    hardware, device = tensorflow_hardware()
    hardware += "-smoke" if args.smoke else ""

    validation = split[split["split"].eq("val")].reset_index(drop=True)
    val_truth = labels_of(validation)
    test_p, val_p, seconds, epochs = {False: [], True: []}, {False: [], True: []}, {}, {}
    total = time.perf_counter()
    run_prefix = "cnmc-dev" if kind == "C-NMC" else kind.lower()
    for seed in args.seeds:
        run, seconds[seed], epochs[seed] = train_run(split_file, outputs, f"{run_prefix}-subject-seed{seed}", seed,
                                                     args)
        predictor = load_predictor(run)
        for tta in (False, True):
            val_p[tta].append(predict_probabilities(predictor, validation, tta=tta, batch_size=64))
            start = time.perf_counter()
            test_p[tta].append(predict_probabilities(predictor, test, tta=tta, batch_size=64))
            seconds[seed, tta] = time.perf_counter() - start
    names = [f"seed {seed}" for seed in args.seeds] + [f"ensemble of {len(args.seeds)}"]
    scored = []  # (name, tta, test probabilities, threshold chosen on the same predictor's validation probabilities)
    for tta in (False, True):
        for name, p, v in zip(names, test_p[tta] + [soft_vote(test_p[tta])], val_p[tta] + [soft_vote(val_p[tta])]):
            scored.append((name, tta, p, choose_threshold(val_truth, v)["threshold"]))
    scored.sort(key=lambda row: names.index(row[0]))

    def f1(p, t): return f1_score(truth, (p >= t).astype(int), average="weighted")
    def counts(frame):
        return (f"{len(frame)} cells, {frame['subject'].nunique()} subjects ({int(frame['label'].eq('all').sum())} "
                f"all / {int(frame['label'].eq('hem').sum())} hem)")
    source = f"real {DATASET_LABELS[kind]} cells" if kind == "C-NMC" else DATASET_LABELS.get(kind, kind)
    described = f"{len(index)} {kind} cells from {args.data}"
    split_name = f"subject-disjoint, fold {args.fold} of {args.folds} (make_split 'subject', seed {args.split_seed})"
    print(f"Data: {args.data} ({source}, dataset={kind}); split: {split_name}")
    for part, frame in parts.items(): print(f"  {part:5s}: {counts(frame)}")
    steps = f", {args.steps_per_epoch} steps per epoch" if args.steps_per_epoch else ""
    print(f"Model: registry AlexNet with the paper's head, trained by bloodcancer.train.train from scratch, "
          f"{args.image_size} px, at most {args.epochs} epochs{steps} (trained: {epochs}), batch {args.batch_size}, "
          f"Adamax {args.learning_rate:g}; seeds {args.seeds}; {device}")
    print("Weighted F1 on the test cells at threshold 0.5, and at the threshold chosen (Youden's J) on the validation "
          "cells predicted the same way (same TTA, same ensemble)")
    print(f"{'run':15s} {'TTA':4s} {'F1@0.5':>7s} {'F1@val-thr':>10s} {'AUC':>6s} {'val-thr':>7s} {'train s':>8s} "
          f"{'test predict s':>14s}")
    common = dict(run=run_stamp(), hardware=hardware, data=described, split=split_name, model="AlexNet",
                  image_size=args.image_size, batch=args.batch_size, epochs_max=args.epochs, test_cells=len(test),
                  commit=git_commit())
    rows = []
    for name, tta, p, t in scored:
        seed = args.seeds[names.index(name)] if name.startswith("seed") else None
        timing = f"{seconds[seed]:8.0f} {seconds[seed, tta]:14.1f}" if seed is not None else ""
        auc = roc_auc_score(truth, p) if len(set(truth)) == 2 else math.nan
        print(f"{name:15s} {'yes' if tta else 'no':4s} {f1(p, 0.5):7.3f} {f1(p, t):10.3f} {auc:6.3f} {t:7.3f} "
              f"{timing}".rstrip())
        rows.append(common | dict(
            member=name, tta=tta, epochs_trained=epochs.get(seed, ""), f1_at_0_5=round(f1(p, 0.5), 4),
            f1_at_val_threshold=round(f1(p, t), 4), auc=round(auc, 4), val_threshold=round(float(t), 4),
            train_s=None if seed is None else round(seconds[seed], 1),
            test_predict_s=None if seed is None else round(seconds[seed, tta], 2), load_1min=load(),
            note=f"soft vote of {len(args.seeds)} runs" if seed is None else f"AlexNet run, seed {seed}"))
    for label, pick in (("single runs (mean)", lambda rs: np.mean(rs[:-1])), ("ensemble", lambda rs: rs[-1])):
        summary = []
        for at in ("0.5", "val-thr"):
            scores = {tta: [f1(p, 0.5 if at == "0.5" else t) for name, rtta, p, t in scored if rtta == tta]
                      for tta in (False, True)}
            summary.append(f"F1@{at} {pick(scores[False]):.3f} -> {pick(scores[True]):.3f}")
        print(f"summary, without -> with TTA, {label}: " + "; ".join(summary))
    out = append_rows(output_csv("tta_ensemble", hardware, args.out, args.smoke), rows, COLUMNS)
    print(f"rows appended to {out}")
    print(f"total {time.perf_counter() - total:.0f} s")
    if holder: holder.cleanup()


if __name__ == "__main__":
    main()
