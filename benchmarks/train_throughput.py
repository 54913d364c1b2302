"""Training throughput (images/s) of registry models with the paper's head, on synthetic in-memory batches.

Measures what the accelerator and the model can do, without the input pipeline: one batch of random 0-255 pixels is
fed again and again through `model.fit` (Adamax, categorical cross-entropy, as `bloodcancer.train.train` compiles).
The first `--warmup` steps (tracing, XLA compilation) are not timed.

    python benchmarks/train_throughput.py --models AlexNet VGG19 --image-size 64 --steps 10
    python benchmarks/train_throughput.py --models ResNetRS50 --image-size 224 --batch-size 40 256 --compare  # a GPU

`--compare` runs each model three ways: float32, mixed precision, and mixed precision with XLA. Prints one table row
per run and appends it to benchmarks/results/train_throughput-<hardware>.csv; `--json PATH` also writes the rows.

`--versus-plain` asks another question: does `bloodcancer.train.train` add anything to Keras? For each model it runs a
real `train(...)` (run folder, callbacks, history, batch-norm recalibration, model.keras) and, in the same process,
a plain `tf_keras` `model.fit` of the same registry model (`build_model`, compiled alike) on the same rows (the run's
own split.csv, read by `RunFolder`), through the same `make_dataset` (cached in memory), batch and class weights.
Epoch times are read by a callback (passed to `train` in `callbacks=`) at the end of every epoch, after every other
callback: the first epoch (tracing, cache fill) is left out and the median of the others counts. Setup (before the
first epoch) and finish (after the last: batch-norm recalibration, model.keras, curves) of `train` are shown apart.
`--diagnose` adds plain runs with each of `train`'s standard callbacks alone (from `bloodcancer.train._callbacks`,
writing into a run folder of their own), to find what costs. Target: ours / plain >= 0.95x. Rows go to
benchmarks/results/train_throughput-<hardware>.csv.

`--callback-costs` times each standard callback of `train` alone at the end of an epoch (checkpoint written every
time: the validation loss improves) and in the per-step hooks, for each model: a fixed cost per epoch that matters
where epochs are short (a GPU), whatever the noise of a shared CPU does to whole-epoch timings.

    python benchmarks/train_throughput.py --versus-plain --models AlexNet EfficientNetB0 --image-size 64 --epochs 4

`--smoke` checks the script in seconds on any machine: all three parts at tiny sizes (AlexNet, 32 pixels, one or two
steps, `--versus-plain` on tiny synthetic cells with `--diagnose` of all callbacks together), rows to `--out` or a
temporary folder. Its figures mean nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (append_rows, cells_folder, dev_cells, git_commit, hardware_slug, load, output_csv,  # noqa: E402
                     run_stamp, smoke_cells)

COLUMNS = ["run", "hardware", "data", "model", "image_size", "batch", "variant", "epochs_timed", "epoch_s",
           "epoch_s_all", "images_per_s", "ratio_to_plain", "epoch_cpu_s", "ratio_to_plain_cpu", "setup_s",
           "finish_s", "load_1min", "note", "commit"]
# --smoke's defaults: seconds on any machine (a batch of 32 is one step per epoch on the tiny cells' training side)
SMOKE = dict(models=["AlexNet"], image_size=32, batch_size=[32], steps=1, warmup=1, epochs=2)
MEASURE_DATA = "one batch of random pixels (synthetic, not cells), fed again and again"


def device_name() -> str:
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"{len(gpus)} x {details.get('device_name', 'GPU')}"
    return f"CPU ({os.cpu_count()} cores)"


def measure(model_name: str, image_size: int, batch_size: int, steps: int, warmup: int, mixed_precision: bool,
            jit_compile: bool) -> dict:
    "Images per second of `steps` training steps after `warmup` untimed ones."
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras
    from bloodcancer.models import build_model

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")
    try:
        model = build_model(model_name, image_size, weights=None, seed=0)
        model.compile(keras.optimizers.Adamax(1e-3), "categorical_crossentropy", jit_compile=jit_compile)
        rng = np.random.default_rng(0)
        images = tf.constant(rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32"))
        labels = tf.one_hot(rng.integers(0, 2, batch_size), 2)
        batches = tf.data.Dataset.from_tensors((images, labels)).repeat()
        model.fit(batches, steps_per_epoch=warmup, epochs=1, verbose=0)
        start = time.perf_counter()
        model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
        seconds = time.perf_counter() - start
    except (tf.errors.ResourceExhaustedError, MemoryError) as error:
        return dict(model=model_name, image_size=image_size, batch_size=batch_size, mixed_precision=mixed_precision,
                    jit_compile=jit_compile, images_per_s=None, step_ms=None,
                    note=f"out of memory ({type(error).__name__})")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return dict(model=model_name, image_size=image_size, batch_size=batch_size, mixed_precision=mixed_precision,
                jit_compile=jit_compile, images_per_s=round(steps * batch_size / seconds, 1),
                step_ms=round(1000 * seconds / steps, 1), note="")


def EpochClock():
    "A Keras callback noting the time at the start of training and at the end of every epoch, after the others."
    import tf_keras as keras
    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__(); self.begin, self.ends, self.finished = None, [], None
        def on_train_begin(self, logs=None): self.begin = (time.perf_counter(), time.process_time())
        def on_epoch_end(self, epoch, logs=None): self.ends.append((time.perf_counter(), time.process_time()))
        def on_train_end(self, logs=None): self.finished = time.perf_counter()
        def epoch_seconds(self, cpu:bool=False) -> list[float]:
            "Seconds (wall-clock, or CPU of all threads) of each epoch, end to end: steps, validation, every callback."
            marks = [m[int(cpu)] for m in [self.begin] + self.ends]
            return [b - a for a, b in zip(marks, marks[1:])]
    return Clock()


def steady(seconds: list[float]) -> float:
    "Median epoch time without the first epoch (tracing, cache fill); the only epoch when there is one."
    return statistics.median(seconds[1:] or seconds)


def hardware_of(device: str, smoke: bool = False) -> str:
    "The results files' name for `device_name()`: `cpu-<n>cores`, or the GPU's name as a slug; `-smoke` after it."
    if device.startswith("CPU"): slug = hardware_slug()
    else:
        count, name = device.split(" x ", 1)
        slug = hardware_slug(name, int(count))
    return slug + ("-smoke" if smoke else "")


def standard_callbacks(folder: Path, model_name: str, image_size: int, batch: int) -> list:
    """`train`'s standard callbacks (`bloodcancer.train._callbacks`, a new run's) writing into the run folder `folder`
    (made here with a config.json of its own: the history callback updates it)."""
    from bloodcancer.config import TrainConfig
    from bloodcancer.core import PAPER
    from bloodcancer.runs import RunFolder
    from bloodcancer.train import _callbacks
    config = TrainConfig(model=model_name, image_size=image_size, batch_size=batch, weights="none", verbose=0)
    run = RunFolder(folder)
    run.path.mkdir(parents=True)
    run.write_config(config.to_dict() | dict(status="running", note="callbacks timed by train_throughput.py"))
    paper = PAPER.replace(image_size=image_size, batch_size=batch)
    return _callbacks(run, True, 0, paper, config.resolved())


def written_by(folder: Path, callback) -> list[Path]:
    "The files `callback` of `standard_callbacks(folder, ...)` has written so far."
    from bloodcancer.runs import RunFolder
    run, name = RunFolder(folder), type(callback).__name__
    found = dict(BestCheckpoint=[run.best_arrays_file], RunHistory=[run.history_file],
                 RandomState=list(run.backup_dir.glob("random-state-*.npz")),
                 BackupAndRestore=list((run.backup_dir/"chief").rglob("*")), TensorBoard=list(run.logs_dir.rglob("*")))
    return [path for path in found.get(name, []) if path.is_file()]


def versus_plain(args, out: Path) -> int:
    "Time `bloodcancer.train.train` against a plain `model.fit` of the same model on the same data and batch."
    import tf_keras as keras
    from bloodcancer.core import PAPER, seed_everything
    from bloodcancer.data import index_dataset, make_synthetic_cnmc
    from bloodcancer.models import build_model
    from bloodcancer.preprocess import InputContract, class_weights, make_dataset
    from bloodcancer.runs import RunFolder
    from bloodcancer.train import train

    if args.smoke and args.data is None:
        data = smoke_cells()
        print("--smoke: tiny synthetic cells (not real)")
    elif args.data == "synthetic" or (args.data is None and not dev_cells().is_dir()):
        data = make_synthetic_cnmc(tempfile.mkdtemp(), cells_per_subject=40, seed=0)
        print(f"no real cells at {dev_cells()}: synthetic cells (not real) instead")
    else:
        data = cells_folder(args.data)
    index = index_dataset(data)
    described = f"{len(index)} {index['dataset'].iloc[0]} cells from {data}"
    device = device_name()
    hardware = hardware_of(device, args.smoke)
    print(f"ours (bloodcancer.train.train) vs plain tf_keras model.fit on {device}; {described}; load {load():.2f}")
    outputs = Path(tempfile.mkdtemp(prefix="versus-plain-"))
    batch = args.batch_size[0]
    rows, common = [], dict(run=args.stamp, hardware=hardware, data=described, image_size=args.image_size,
                            batch=batch, commit=git_commit())

    def plain(model_name, split, extra_callbacks=()):
        "A plain fit of the registry model on the run's rows: the same build, compile, datasets and class weights."
        keras.backend.clear_session()
        seed_everything(args.seed, tensorflow=True)
        keras.utils.set_random_seed(args.seed)
        net = build_model(model_name, args.image_size, weights=None, seed=args.seed)
        net.compile(optimizer=keras.optimizers.Adamax(PAPER.learning_rate), loss="categorical_crossentropy",
                    metrics=["accuracy"])
        train_rows, val_rows = split[split["split"].eq("train")], split[split["split"].eq("val")]
        contract = InputContract(model_name, args.image_size)
        train_data = make_dataset(train_rows, contract, batch, training=True, seed=args.seed)
        val_data = make_dataset(val_rows, contract, batch, training=False, seed=args.seed)
        clock = EpochClock()
        net.fit(train_data, validation_data=val_data, epochs=args.epochs, class_weight=class_weights(train_rows),
                callbacks=list(extra_callbacks) + [clock], verbose=0)
        return clock

    def record(model_name, variant, clock, n_train, ours_extra=None, plain_epoch=None):
        "A row for one run; returns its (wall, CPU) seconds per steady epoch."
        seconds, cpu = clock.epoch_seconds(), clock.epoch_seconds(cpu=True)
        epoch, epoch_cpu = steady(seconds), steady(cpu)
        row = common | dict(model=model_name, variant=variant, epochs_timed=max(len(seconds) - 1, 1),
                            epoch_s=round(epoch, 3), epoch_s_all=" ".join(f"{s:.2f}" for s in seconds),
                            images_per_s=round(n_train / epoch, 1), epoch_cpu_s=round(epoch_cpu, 3), load_1min=load())
        if plain_epoch:
            row |= dict(ratio_to_plain=round(plain_epoch[0] / epoch, 3),
                        ratio_to_plain_cpu=round(plain_epoch[1] / epoch_cpu, 3))
        rows.append(row | (ours_extra or {}))
        ratio = f"{row['ratio_to_plain']:.3f}x (CPU {row['ratio_to_plain_cpu']:.3f}x)" if plain_epoch else "-"
        print(f"  {variant:<34} epoch {epoch:6.2f} s ({row['epoch_s_all']}), CPU {epoch_cpu:6.2f} s, "
              f"{row['images_per_s']:7.1f} images/s; plain/this {ratio}; load {row['load_1min']:.2f}", flush=True)
        return epoch, epoch_cpu

    medians = {}
    for model_name in args.models:
        print(f"\n{model_name} at {args.image_size} px, batch {batch}, {args.epochs} epochs (the first not counted)")
        ratios = []
        for repeat in range(args.repeats):
            clock = EpochClock()
            started = time.perf_counter()
            run_dir = train(model=model_name, data=data, image_size=args.image_size, batch_size=batch,
                            epochs=args.epochs, weights=None, seed=args.seed, outputs=outputs,
                            run_name=f"versus-{model_name}-{repeat}", verbose=0, callbacks=[clock])
            total = time.perf_counter() - started
            split = RunFolder(run_dir).read_split()
            n_train = int(split["split"].eq("train").sum())
            extra = dict(setup_s=round(clock.begin[0] - started, 2),
                         finish_s=round(started + total - clock.finished, 2),
                         note=f"train(): {total:.1f} s in all; its standard callbacks run every epoch")
            ours = record(model_name, "ours: bloodcancer.train.train", clock, n_train, extra)
            plain_epoch = record(model_name, "plain: tf_keras model.fit", plain(model_name, split), n_train)
            rows[-2] |= dict(ratio_to_plain=round(plain_epoch[0] / ours[0], 3),
                             ratio_to_plain_cpu=round(plain_epoch[1] / ours[1], 3))
            ratios.append((plain_epoch[0] / ours[0], plain_epoch[1] / ours[1]))
            print(f"  => ours / plain (throughput): {plain_epoch[0] / ours[0]:.3f}x wall-clock, "
                  f"{plain_epoch[1] / ours[1]:.3f}x by CPU time (target >= 0.95x); setup {extra['setup_s']} s, "
                  f"finish {extra['finish_s']} s", flush=True)
            if not args.diagnose: continue
            # Each standard callback alone (by its position in the list, in a run folder of its own), then all of
            # them together; --smoke: all together only
            def callbacks(label): return standard_callbacks(outputs/f"diagnose-{model_name}-{repeat}-{label}",
                                                            model_name, args.image_size, batch)
            together = callbacks("all")
            for position in [] if args.smoke else range(len(together)):
                alone = callbacks(position)[position]
                record(model_name, f"plain + {type(alone).__name__}", plain(model_name, split, [alone]), n_train,
                       plain_epoch=plain_epoch)
            record(model_name, "plain + all", plain(model_name, split, together), n_train, plain_epoch=plain_epoch)
        medians[model_name] = [statistics.median(r[i] for r in ratios) for i in (0, 1)]
    # Each repeat pairs a train() with a plain fit run right after it: the median over the pairs resists the load
    # that a shared machine puts on one run and not the other
    for model_name, (wall, cpu) in medians.items():
        print(f"{model_name}: ours / plain, median of {args.repeats} pairs: {wall:.3f}x wall-clock, {cpu:.3f}x by CPU "
              "time (target >= 0.95x)")
    shutil.rmtree(outputs, ignore_errors=True)  # the run folders (model files, checkpoints) served only the timing
    out = append_rows(out, rows, COLUMNS)
    print(f"\nrows appended to {out}")
    return 0


def callback_costs(args, out: Path) -> int:
    "Seconds that each of train()'s standard callbacks adds at the end of an epoch (and per step), for each model."
    import numpy as np
    import tf_keras as keras
    from bloodcancer.core import PAPER
    from bloodcancer.models import build_model
    device = device_name()
    hardware = hardware_of(device, args.smoke)
    print(f"per-epoch cost of train()'s standard callbacks on {device}; load {load():.2f}")
    rows, common = [], dict(run=args.stamp, hardware=hardware, data="one random batch (callbacks read no data)",
                            image_size=args.image_size, batch=args.batch_size[0], commit=git_commit())
    for model_name in args.models:
        keras.backend.clear_session()
        net = build_model(model_name, args.image_size, weights=None, seed=0)
        net.compile(optimizer=keras.optimizers.Adamax(PAPER.learning_rate), loss="categorical_crossentropy",
                    metrics=["accuracy"])
        images = np.random.default_rng(0).uniform(0, 255, (2, args.image_size, args.image_size, 3)).astype("float32")
        net.fit(images, np.eye(2, dtype="float32"), epochs=1, verbose=0)  # the optimizer's state exists, as in training
        run_dir = Path(tempfile.mkdtemp(prefix="callbacks-"))/model_name
        standard = standard_callbacks(run_dir, model_name, args.image_size, args.batch_size[0])
        for callback in standard:
            callback.set_model(net); callback.set_params(dict(epochs=40, steps=100, verbose=0))
            callback.on_train_begin()
        print(f"\n{model_name} at {args.image_size} px: {net.count_params():,} parameters")
        for callback in standard:
            name = type(callback).__name__
            epochs, steps = [], []
            for epoch in range(3):  # the validation loss improves every epoch: a checkpoint each time (the worst case)
                loss = 1.0 - 0.1 * epoch
                logs = dict(loss=loss, accuracy=0.5, val_loss=loss, val_accuracy=0.5, learning_rate=1e-3)
                start = time.perf_counter()
                callback.on_epoch_begin(epoch)
                callback.on_epoch_end(epoch, logs)
                epochs.append(time.perf_counter() - start)
                start = time.perf_counter()
                for step in range(20):
                    callback.on_train_batch_begin(step); callback.on_train_batch_end(step, dict(loss=1.0))
                steps.append((time.perf_counter() - start) / 20)
            megabytes = sum(f.stat().st_size for f in written_by(run_dir, callback)) / 2**20
            epoch_s, step_ms = statistics.median(epochs), 1000 * statistics.median(steps)
            print(f"  {name:<28} {epoch_s:8.3f} s per epoch  {step_ms:7.3f} ms per step  files {megabytes:8.1f} MB",
                  flush=True)
            rows.append(common | dict(model=model_name, variant=f"callback {name}", epoch_s=round(epoch_s, 4),
                                      epoch_s_all=" ".join(f"{e:.3f}" for e in epochs), load_1min=load(),
                                      note=f"on_epoch_end, median of 3 (val_loss improving); {step_ms:.3f} ms per step "
                                           f"in batch hooks; {megabytes:.1f} MB written"))
        for callback in standard: callback.on_train_end()
        shutil.rmtree(run_dir.parent, ignore_errors=True)  # checkpoints and backups written only to be timed
    out = append_rows(out, rows, COLUMNS)
    print(f"\nrows appended to {out}")
    return 0


def throughput(args, out: Path) -> int:
    "Images/s of each model, batch and precision on one in-memory batch: a table row each, appended to `out`."
    variants = [(False, False), (True, False), (True, True)] if args.compare else [(args.mixed_precision,
                                                                                   args.jit_compile)]
    device = device_name()
    print(f"training throughput on {device}; synthetic batches, {args.steps} timed steps after {args.warmup} "
          "warm-up steps")
    header = (f"{'model':<16} {'size':>5} {'batch':>6} {'precision':<10} {'XLA':<4} {'images/s':>10} {'ms/step':>9}"
              "  note")
    print(header)
    print("-" * len(header))
    rows, table = [], []
    common = dict(run=args.stamp, hardware=hardware_of(device, args.smoke), data=MEASURE_DATA, commit=git_commit())
    for model_name in args.models:
        for batch_size in args.batch_size:
            for mixed, xla in variants:
                row = measure(model_name, args.image_size, batch_size, args.steps, args.warmup, mixed, xla)
                rows.append(row | dict(device=device))
                speed = "-" if row["images_per_s"] is None else f"{row['images_per_s']:.1f}"
                step = "-" if row["step_ms"] is None else f"{row['step_ms']:.1f}"
                print(f"{model_name:<16} {args.image_size:>5} {batch_size:>6} {'mixed' if mixed else 'float32':<10} "
                      f"{'yes' if xla else 'no':<4} {speed:>10} {step:>9}  {row['note']}", flush=True)
                steps = f"{args.steps} timed steps after {args.warmup} warm-up steps, {step} ms per step"
                table.append(common | dict(
                    model=model_name, image_size=args.image_size, batch=batch_size, images_per_s=row["images_per_s"],
                    variant=f"model.fit, {'mixed precision' if mixed else 'float32'}{' + XLA' if xla else ''}",
                    load_1min=load(), note="; ".join(n for n in (steps, row["note"]) if n)))
    if args.json:
        with open(args.json, "w") as handle: json.dump(rows, handle, indent=2)
    print(f"rows appended to {append_rows(out, table, COLUMNS)}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["ResNetRS50"], help="registry names. Defaults to ResNetRS50.")
    parser.add_argument("--image-size", type=int, default=224, help="input side in pixels. Defaults to 224.")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[40],
                        help="one or more batch sizes. Defaults to 40.")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps. Defaults to 20.")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed steps first (tracing, compilation). Defaults to 3.")
    parser.add_argument("--mixed-precision", action="store_true", help="float16 compute (float32 variables)")
    parser.add_argument("--jit-compile", action="store_true", help="compile the training step with XLA")
    parser.add_argument("--compare", action="store_true",
                        help="run float32, mixed precision, and mixed precision + XLA")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--versus-plain", action="store_true", help="time bloodcancer.train.train vs a plain model.fit")
    parser.add_argument("--data", default=None, help="--versus-plain: cells to train on; 'synthetic' for synthetic. "
                        "Defaults to $BLOODCANCER_DEV_CELLS or ../shared/data/cnmc-dev, else synthetic")
    parser.add_argument("--epochs", type=int, default=4, help="--versus-plain: epochs of each run. Defaults to 4.")
    parser.add_argument("--repeats", type=int, default=1, help="--versus-plain: ours-then-plain pairs per model. "
                        "Defaults to 1.")
    parser.add_argument("--seed", type=int, default=42, help="--versus-plain: seed of split and runs. Defaults to 42.")
    parser.add_argument("--diagnose", action="store_true", help="--versus-plain: plain runs with each of train()'s "
                        "callbacks too")
    parser.add_argument("--out", default=None, help="CSV to append to. Defaults to "
                        "benchmarks/results/train_throughput-<hardware>.csv")
    parser.add_argument("--callback-costs", action="store_true", help="time each of train()'s standard callbacks "
                        "alone, per epoch")
    parser.add_argument("--smoke", action="store_true", help=f"check the script in seconds: the throughput, "
                        f"--callback-costs and --versus-plain --diagnose at {SMOKE} on tiny synthetic cells (unless "
                        "--data); rows to --out or a temporary folder")
    args = parser.parse_args(argv)
    if args.smoke:  # smoke sizes, unless given
        parser.set_defaults(**SMOKE)
        args = parser.parse_args(argv)
    args.stamp = run_stamp()  # one run: every row carries the time it started
    out = output_csv("train_throughput", hardware_of(device_name(), args.smoke), args.out, args.smoke)
    if args.smoke:
        throughput(args, out)
        callback_costs(args, out)
        args.diagnose = True
        return versus_plain(args, out)
    if args.versus_plain: return versus_plain(args, out)
    if args.callback_costs: return callback_costs(args, out)
    return throughput(args, out)


if __name__ == "__main__":
    sys.exit(main())
