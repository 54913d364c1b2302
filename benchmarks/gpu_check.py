"""GPU check: what one GPU does with the paper's workload, in at most 8 minutes, recorded to a CSV.

One prepared run, made to work the first time on a machine nobody has seen: every section runs in its own process
(an out-of-memory abort or an XLA crash costs that section, not the run), every failure becomes a row with the
error, a global time budget (`--budget`, 450 s) gives each section a deadline and sections that cannot fit are
skipped with a row saying so. No internet is needed: models start from random weights (`weights=None`) and the
data are synthetic cells written by `bloodcancer synth` (or the real cells, when `$BLOODCANCER_DEV_CELLS` or
../shared/data/cnmc-dev exists, for the input pipeline).

Sections, in order:
  environment     TensorFlow, CUDA build, the GPU's name and compute capability
  throughput      ResNetRS50 at 224 px trained on a synthetic batch (`model.fit` of the registry model compiled as
                  `bloodcancer.train.train` compiles it: Adamax, categorical cross-entropy): float32, then mixed
                  precision + XLA, each at batch 40 and then doubling the batch until it no longer fits (out of
                  memory) or the section's time is up; images/s and peak GPU memory of each
  input_pipeline  `bloodcancer.preprocess.make_dataset` on all cores: first epoch (decode, cache) and cached epochs
                  (augmentation), images/s, against what the model consumes (is the GPU starved?); then, time
                  permitting, ResNetRS50 (mixed + XLA, batch 40) trained on that pipeline's batches
  smoke_models    one epoch of each of the paper's eight models at 224 px on the synthetic cells, through the
                  `bloodcancer train` command (several at a time on a GPU)
Targets (an H100/H200): ResNetRS50 >= 2,000 images/s with mixed precision + XLA and >= 2.5x float32; the input
pipeline >= 1.5x the model's consumption. They are printed beside the figures, never used to tune anything.

Rows are appended to benchmarks/results/gpu_check-<hardware>.csv (hardware: the GPU's name as a slug, or
cpu-<n>cores), one per measurement: section, model, image size, batch, precision, XLA, images/s, peak memory,
seconds, note, error. `--smoke` runs everything at tiny sizes with two models on any machine (about a minute on a
CPU) and writes to gpu_check-<hardware>-smoke.csv, so smoke figures never mix with real ones.

    python benchmarks/gpu_check.py                  # on the GPU machine
    python benchmarks/gpu_check.py --smoke          # anywhere
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, append_rows, dev_cells, git_commit, hardware_slug, load, results_file, run_stamp  # noqa: E402

COLUMNS = ["run", "hardware", "section", "model", "image_size", "batch", "precision", "xla", "images_per_s",
           "peak_memory_mb", "seconds", "ratio", "target", "note", "error", "load_1min", "commit"]
SMOKE_MODELS = ("AlexNet", "EfficientNetB0")


def settings(smoke: bool) -> dict:
    "Sizes of every section; `smoke` shrinks them to seconds on a CPU."
    if smoke:
        return dict(model="AlexNet", image_size=32, batch=4, max_batch=8, steps_seconds=0.5, min_steps=2, warmup=1,
                    synth=["--subjects-all", "3", "--subjects-hem", "3", "--cells-per-subject", "6",
                           "--image-size", "96"],
                    pipeline_images=200, smoke_models=list(SMOKE_MODELS), smoke_size=32, smoke_batch=8, parallel=2,
                    fed_steps=4, fed_needed=20,
                    caps=dict(environment=0.3, fp32=0.2, mixed_xla=0.3, input_pipeline=0.3, smoke_models=0.5),
                    reserves=dict(fp32=0, mixed_xla=0, input_pipeline=0))
    # max_batch 2560: the synthetic batch is one TensorFlow constant, which must stay under 2 GB (2560 x 224 x 224 x 3
    # float32 is 1.5 GB).
    return dict(model="ResNetRS50", image_size=224, batch=40, max_batch=2560, steps_seconds=3.0, min_steps=5, warmup=3,
                synth=["--subjects-all", "9", "--subjects-hem", "6", "--cells-per-subject", "20"],
                pipeline_images=4000, smoke_models=None, smoke_size=224, smoke_batch=40, parallel=8, fed_steps=100,
                fed_needed=60,
                # shares of the budget: at most (caps), and left for the sections after (reserves); of 450 s the
                # pipeline gets >= 76 s and the eight models >= 113 s however long the batch searches would take
                caps=dict(environment=0.13, fp32=0.2, mixed_xla=0.35, input_pipeline=0.22, smoke_models=0.6),
                reserves=dict(fp32=0.57, mixed_xla=0.42, input_pipeline=0.25))


# ----------------------------------------------------------------------------------------------------------------
# Child processes: one section each; rows go to a JSON-lines file as they are measured (a crash keeps them).

class Rows:
    def __init__(self, path: str): self.path = path
    def add(self, **row):
        with open(self.path, "a") as handle: handle.write(json.dumps(row) + "\n")
        print("row:", json.dumps(row), flush=True)


def gpu_memory(tf, reset: bool = False):
    "Peak GPU memory in MB since the last reset (None without a GPU); `reset` starts a new count."
    if not tf.config.list_physical_devices("GPU"): return None
    try:
        if reset: tf.config.experimental.reset_memory_stats("GPU:0"); return None
        return round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20, 1)
    except Exception: return None


def is_out_of_memory(error: BaseException) -> bool:
    text = f"{type(error).__name__} {error}".lower()
    keys = ("resourceexhausted", "resource_exhausted", "out of memory", " oom", "alloc_failed", "failed to allocate")
    return any(key in text for key in keys)


def child_environment(rows: Rows, args: dict):
    import tensorflow as tf
    from _common import tensorflow_hardware
    slug, description = tensorflow_hardware()
    build = tf.sysconfig.get_build_info()
    gpus = tf.config.list_physical_devices("GPU")
    details = tf.config.experimental.get_device_details(gpus[0]) if gpus else {}
    note = (f"{description}; CUDA build {build.get('cuda_version', '-')}, cuDNN {build.get('cudnn_version', '-')}; "
            f"compute capability {details.get('compute_capability', '-')}; {os.cpu_count()} CPU cores")
    from bloodcancer.models import PAPER_MODELS
    rows.add(section="environment", note=note, hardware=slug, gpus=len(gpus), paper_models=list(PAPER_MODELS))


def train_rate(tf, keras, model, batch: int, image_size: int, cfg: dict, deadline: float) -> dict:
    "Images/s of `model.fit` on one synthetic batch repeated: warm-up steps untimed, then steps for ~steps_seconds."
    import numpy as np
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, image_size, image_size, 3)).astype("float32")
    labels = np.eye(2, dtype="float32")[rng.integers(0, 2, batch)]
    data = tf.data.Dataset.from_tensors((images, labels)).repeat()
    gpu_memory(tf, reset=True)
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=cfg["warmup"], epochs=1, verbose=0)  # tracing, XLA compilation, autotuning
    warmup = time.perf_counter() - start
    probe_start = time.perf_counter()
    model.fit(data, steps_per_epoch=cfg["min_steps"], epochs=1, verbose=0)
    step = (time.perf_counter() - probe_start) / cfg["min_steps"]
    steps = int(min(200, max(cfg["min_steps"], math.ceil(cfg["steps_seconds"] / max(step, 1e-6)))))
    if time.monotonic() + steps * step * 1.5 > deadline: steps = cfg["min_steps"]
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    note = (f"{steps} timed steps after {cfg['warmup']} + {cfg['min_steps']} untimed (first call {warmup:.1f} s: "
            "tracing/compilation)")
    return dict(images_per_s=round(steps * batch / seconds, 1), peak_memory_mb=gpu_memory(tf), note=note,
                seconds=round(warmup + seconds + step * cfg["min_steps"], 1), warmup=warmup, timed=seconds)


def child_throughput(rows: Rows, args: dict):
    "Batch 40, then doubling until out of memory, the section's deadline or max_batch; one precision per process."
    import tensorflow as tf
    import tf_keras as keras
    from bloodcancer.models import build_model
    cfg, deadline, mixed = args["cfg"], args["deadline"], args["precision"] == "mixed"
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    def compiled(xla: bool):
        keras.backend.clear_session()
        start = time.perf_counter()
        model = build_model(cfg["model"], cfg["image_size"], weights=None, seed=0)
        model.compile(keras.optimizers.Adamax(1e-3), "categorical_crossentropy", metrics=["accuracy"], jit_compile=xla)
        print(f"built {cfg['model']} in {time.perf_counter() - start:.1f} s (XLA {xla})", flush=True)
        return model
    xla = mixed
    base = dict(section="throughput", model=cfg["model"], image_size=cfg["image_size"],
                precision="mixed_float16" if mixed else "float32", xla=xla)
    model = compiled(xla)
    batch, previous = cfg["batch"], None
    while batch <= cfg["max_batch"]:
        if previous is not None:  # the next batch needs about: compilation again (XLA) + twice the steps' time
            needed = previous["warmup"] + 2 * previous["timed"] + 5
            if time.monotonic() + needed > deadline:
                rows.add(**base, batch=batch, note=f"not tried: the section's time is up (would need about "
                         f"{needed:.0f} s); the largest batch measured is {batch // 2}, not necessarily the largest "
                         "that fits")
                return
        try:
            result = train_rate(tf, keras, model, batch, cfg["image_size"], cfg, deadline)
        except Exception as error:
            if is_out_of_memory(error):
                fits = f"the largest batch that fits is {batch // 2} (between {batch // 2} and {batch - 1})"
                rows.add(**base, batch=batch, peak_memory_mb=gpu_memory(tf),
                         note=f"out of memory: {fits}" if batch > cfg["batch"] else "out of memory at the first batch")
            else:
                rows.add(**base, batch=batch, error=f"{type(error).__name__}: {str(error).strip()[:300]}")
                if xla and previous is None:  # XLA itself failed (no ptxas, say): mixed precision alone gets a figure
                    xla = False
                    base = base | dict(xla=False)
                    model = compiled(False)
                    continue
            return
        rows.add(**base, batch=batch, **{k: v for k, v in result.items() if k not in ("warmup", "timed")})
        previous, batch = result, batch * 2
    rows.add(**base, note=f"stopped at the largest batch asked for ({cfg['max_batch']}) without running out of memory")


def pipeline_frame(args: dict):
    "(rows, description): the real cells where present, else the synthetic ones, repeated to `pipeline_images`."
    import pandas as pd
    from bloodcancer.data import index_dataset
    real = Path(args["real_cells"]) if args.get("real_cells") else None
    folder = real if real is not None and real.is_dir() else Path(args["synthetic"])
    index = index_dataset(folder)
    frame = index[index["label"].isin(["all", "hem"]) & index["problem"].eq("")].reset_index(drop=True)
    kind = str(index["dataset"].iloc[0])
    suffixes = ", ".join(sorted({Path(p).suffix.lstrip(".").upper() for p in frame["path"]}))
    copies = max(1, math.ceil(args["cfg"]["pipeline_images"] / len(frame)))
    repeated = pd.concat([frame] * copies, ignore_index=True).head(args["cfg"]["pipeline_images"])
    described = f"{len(repeated)} images: {len(frame)} {kind} cells ({suffixes}) from {folder}"
    if copies > 1: described += f", each listed {copies} times (decoded every time: the work of distinct files)"
    return repeated, described


def child_input_pipeline(rows: Rows, args: dict):
    import tensorflow as tf
    from bloodcancer.preprocess import InputContract, make_dataset
    cfg, deadline = args["cfg"], args["deadline"]
    frame, described = pipeline_frame(args)
    for path in set(frame["path"]): Path(path).read_bytes()  # from the page cache, as in any epoch after the first read
    size, batch = cfg["image_size"], cfg["batch"]
    base = dict(section="input_pipeline", model=cfg["model"], image_size=size, batch=batch)

    def epoch(dataset) -> tuple[int, float]:
        start, n = time.perf_counter(), 0
        for images, _ in dataset: n += int(images.shape[0])
        return n, time.perf_counter() - start

    start = time.perf_counter()
    dataset = make_dataset(frame, InputContract(cfg["model"], size), batch_size=batch, training=True)
    n, _ = epoch(dataset)
    seconds = time.perf_counter() - start  # the build and the file check count
    rows.add(**base, images_per_s=round(n / seconds, 1), seconds=round(seconds, 2),
             note=f"first epoch (file check, decode, denoise, cache, augment) on {os.cpu_count()} cores; {described}")
    cached = [epoch(dataset) for _ in range(2)]
    n, seconds = cached[0][0], min(s for _, s in cached)
    rows.add(**base, images_per_s=round(n / seconds, 1), seconds=round(seconds, 2),
             note=f"cached epochs (shuffle, augment, scale), best of 2, on {os.cpu_count()} cores; {described}")

    # The direct question: does the model train as fast on these batches as on a batch already in memory?
    if time.monotonic() + cfg["fed_needed"] > deadline:
        rows.add(**(base | dict(section="input_pipeline_fed")), note="not run: the section's time is up"); return
    import tf_keras as keras
    from bloodcancer.models import build_model
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = build_model(cfg["model"], size, weights=None, seed=0)
    model.compile(keras.optimizers.Adamax(1e-3), "categorical_crossentropy", metrics=["accuracy"], jit_compile=True)
    fed = dataset.repeat()
    gpu_memory(tf, reset=True)
    model.fit(fed, steps_per_epoch=cfg["warmup"] + 1, epochs=1, verbose=0)
    steps = cfg["fed_steps"]
    start = time.perf_counter()
    model.fit(fed, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    rows.add(**(base | dict(section="input_pipeline_fed")), precision="mixed_float16", xla=True,
             images_per_s=round(steps * batch / seconds, 1),
             seconds=round(seconds, 2), peak_memory_mb=gpu_memory(tf),
             note=f"model.fit fed by make_dataset's cached, augmented batches ({steps} steps); compare with the "
                  "throughput row of the same batch and precision (a batch already in memory)")


CHILDREN = dict(environment=child_environment, throughput=child_throughput, input_pipeline=child_input_pipeline)


def child_main(section: str, rows_path: str, args_json: str) -> int:
    "Run one section; mark it done (a `.done` file beside the rows) whether it measured or recorded its error."
    rows = Rows(rows_path)
    args = json.loads(args_json)
    code = 0
    try:
        CHILDREN[section](rows, args)
    except Exception as error:
        traceback.print_exc()
        rows.add(section=args.get("label", section), error=f"{type(error).__name__}: {str(error).strip()[:400]}")
        code = 1
    Path(f"{rows_path}.done").touch()
    sys.stdout.flush()
    os._exit(code)  # TensorFlow's teardown can take seconds on a busy machine: the rows are written already


# ----------------------------------------------------------------------------------------------------------------
# The parent: deadlines, the subprocesses, the CSV and the summary.

def child_environment_variables() -> dict:
    env = dict(os.environ)
    paths = [str(ROOT), str(ROOT/"benchmarks")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # several processes may share the GPU (smoke_models)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_child(section: str, label: str, args: dict, deadline: float, work: Path) -> list[dict]:
    "Run one section in a fresh Python; its rows, plus an error row when it crashed, timed out or wrote nothing."
    rows_path, done = work/f"rows-{label}.jsonl", work/f"rows-{label}.jsonl.done"
    rows_path.unlink(missing_ok=True); done.unlink(missing_ok=True)
    timeout = deadline - time.monotonic()
    if timeout < 5: return [dict(section=label, note="skipped: no time left in the budget")]
    command = [sys.executable, str(Path(__file__).resolve()), "--child", section, "--rows", str(rows_path),
               "--child-args", json.dumps(args | dict(deadline_in=timeout, label=label))]
    print(f"\n== {label} (at most {timeout:.0f} s)", flush=True)
    start = time.monotonic()
    log = work/f"log-{label}.txt"
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=child_environment_variables(),
                                   cwd=ROOT)
        try: code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill(); process.wait(); code = "timeout"
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()] if rows_path.exists() else []
    for row in rows: print(f"   {row}", flush=True)
    tail = " | ".join(line.strip() for line in log.read_text(errors="replace").splitlines()[-6:])[-600:]
    if code == "timeout" and done.exists():
        print(f"   ({label} had finished; its process was stopped while exiting)", flush=True)
    elif code == "timeout":
        rows.append(dict(section=label, note=f"log tail: {tail}",
                         error=f"stopped after {time.monotonic() - start:.0f} s: the section's time budget ran out"))
    elif code != 0 and not any(row.get("error") for row in rows):
        rows.append(dict(section=label, error=f"the process exited with code {code}", note=f"log tail: {tail}"))
    return rows


def bloodcancer_command() -> list[str]:
    "The `bloodcancer` console script beside this Python, else the same entry point through `python -c`."
    script = Path(sys.executable).with_name("bloodcancer")
    if script.is_file() and os.access(script, os.X_OK): return [str(script)]
    return [sys.executable, "-c", "import sys; from bloodcancer.cli import main; sys.exit(main())"]


def make_synthetic(work: Path, cfg: dict) -> tuple[Path | None, list[dict]]:
    "A small synthetic C-NMC written by `bloodcancer synth`; (its folder, rows describing a failure)."
    folder = work/"synthetic"
    start = time.monotonic()
    try:
        done = subprocess.run(bloodcancer_command() + ["synth", str(folder), *cfg["synth"]], capture_output=True,
                              text=True, timeout=120, env=child_environment_variables(), cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None, [dict(section="synthetic_data", error="bloodcancer synth took over 120 s")]
    if done.returncode != 0:
        return None, [dict(section="synthetic_data", error=f"bloodcancer synth failed: {done.stderr.strip()[-400:]}")]
    print(f"synthetic cells (not real) written to {folder} in {time.monotonic() - start:.1f} s", flush=True)
    return folder, []


def smoke_models(folder: Path, cfg: dict, models: list[str], deadline: float, work: Path) -> list[dict]:
    "One epoch of each model through `bloodcancer train`, `parallel` at a time; a row per model."
    outputs, run_name = work/"runs", "gpu-check"
    def command(model):
        return bloodcancer_command() + [
            "train", "--model", model, "--data", str(folder), "--image-size", str(cfg["smoke_size"]),
            "--batch-size", str(cfg["smoke_batch"]), "--epochs", "1", "--weights", "none", "--outputs", str(outputs),
            "--run-name", run_name, "--verbose", "2"]
    pending, running, rows = list(models), {}, []
    together = f"{cfg['parallel']} at a time on one device" if cfg["parallel"] > 1 else "one at a time"
    print(f"\n== smoke_models: {', '.join(models)} ({together}, at most {deadline - time.monotonic():.0f} s)",
          flush=True)
    while pending or running:
        while pending and len(running) < cfg["parallel"]:
            model = pending.pop(0)
            if deadline - time.monotonic() < 20:
                rows.append(dict(section="smoke_models", model=model, image_size=cfg["smoke_size"],
                                 batch=cfg["smoke_batch"], note="skipped: no time left in the budget"))
                continue
            log = open(work/f"log-train-{model}.txt", "w")
            running[model] = (subprocess.Popen(command(model), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                               env=child_environment_variables()), time.monotonic(), log)
        time.sleep(0.5)
        for model, (process, started, log) in list(running.items()):
            late = time.monotonic() > deadline
            if process.poll() is None and not late: continue
            if late and process.poll() is None: process.kill(); process.wait()
            log.close()
            del running[model]
            rows.append(smoke_row(model, process.returncode, time.monotonic() - started, late, outputs/run_name/model,
                                  cfg, work/f"log-train-{model}.txt", together))
            print(f"   {rows[-1]}", flush=True)
    return rows


def smoke_row(model, code, seconds, late, run_dir: Path, cfg, log: Path, together: str) -> dict:
    row = dict(section="smoke_models", model=model, image_size=cfg["smoke_size"], batch=cfg["smoke_batch"],
               precision="float32", xla=False, seconds=round(seconds, 1))
    tail = " | ".join(line.strip() for line in log.read_text(errors="replace").splitlines()[-5:])[-500:]
    if late: return row | dict(error="stopped: the time budget ran out", note=f"log tail: {tail}")
    if code != 0: return row | dict(error=f"bloodcancer train exited with code {code}", note=f"log tail: {tail}")
    try:
        import csv
        history = list(csv.DictReader(open(run_dir/"history.csv")))[-1]
        config = json.loads((run_dir/"config.json").read_text())
        n_train = config.get("n_images", {}).get("train")
        def fmt(key): return f"{float(history[key]):.3f}" if history.get(key) not in (None, "") else "-"
        return row | dict(note=f"1 epoch on {n_train} synthetic training cells ({together}): loss {fmt('loss')}, "
                               f"accuracy {fmt('accuracy')}, val_loss {fmt('val_loss')}; run {config.get('status')} in "
                               f"{config.get('duration_s')} s (process {seconds:.0f} s, TensorFlow start included)")
    except Exception as error:
        return row | dict(error=f"the run folder is incomplete: {type(error).__name__}: {error}")


def best(rows, **match):
    "The highest images/s of the rows that match every key of `match`; None when there is none."
    values = [r["images_per_s"] for r in rows
              if r.get("images_per_s") and all(r.get(key) == value for key, value in match.items())]
    return max(values) if values else None


def target_rows(rows: list[dict], cfg: dict, on_gpu: bool) -> list[dict]:
    "The issue's targets (H100/H200) against the figures: a row each with the ratio; 'n.a.' where a figure is missing."
    out = []
    def add(name, value, target, unit, note):
        met = "n.a." if value is None else ("met" if value >= target else "not met")
        if not on_gpu and value is not None: met += " (targets are for an H100/H200; this is not one)"
        out.append(dict(section="targets", model=cfg["model"], ratio=None if value is None else float(f"{value:.3g}"),
                        target=f">= {target:g}{unit}", note=f"{name}: {met}" + (f"; {note}" if note else "")))
    mixed_best = best(rows, section="throughput", precision="mixed_float16", xla=True)
    fp32_best = best(rows, section="throughput", precision="float32")
    mixed_40 = best(rows, section="throughput", precision="mixed_float16", xla=True, batch=cfg["batch"])
    fp32_40 = best(rows, section="throughput", precision="float32", batch=cfg["batch"])
    def ratio(a, b): return a / b if a and b else None
    add("mixed precision + XLA, best batch, images/s", mixed_best, 2000, " images/s",
        "the ratio column holds the images/s")
    add("mixed + XLA / float32, best batch of each", ratio(mixed_best, fp32_best), 2.5, "x", "")
    add(f"mixed + XLA / float32, batch {cfg['batch']}", ratio(mixed_40, fp32_40), 2.5, "x", "")
    consumption = mixed_40 or fp32_40
    for kind in ("first epoch", "cached epochs"):
        rate = next((r["images_per_s"] for r in rows if r.get("section") == "input_pipeline" and r.get("images_per_s")
                     and r.get("note", "").startswith(kind)), None)
        add(f"input pipeline ({kind}) / the model's consumption at batch {cfg['batch']}", ratio(rate, consumption), 1.5,
            "x", f"consumption: {consumption} images/s ({'mixed + XLA' if mixed_40 else 'float32'})" if consumption
            else "the model's consumption was not measured")
    add(f"training fed by the pipeline / by a batch in memory (mixed + XLA, batch {cfg['batch']})",
        ratio(best(rows, section="input_pipeline_fed"), mixed_40), 0.95, "x", "below 1: the GPU waits for data")
    return out


def summary(rows: list[dict]) -> str:
    header = (f"{'section':<18} {'model':<15} {'size':>4} {'batch':>5} {'precision':<13} {'XLA':<3} {'images/s':>9} "
              f"{'peak MB':>9} {'s':>6}  note / error")
    lines = [header, "-" * len(header)]
    def cell(row, key, empty=""): return str(row.get(key) if row.get(key) not in (None, "") else empty)
    for r in rows:
        if r["section"] == "targets": continue
        text = r.get("error") and f"ERROR {r['error']}" or r.get("note", "")
        xla = "" if r.get("xla") in (None, "") else ("yes" if r["xla"] else "no")
        lines.append(f"{r['section']:<18} {cell(r, 'model'):<15} {cell(r, 'image_size'):>4} {cell(r, 'batch'):>5} "
                     f"{cell(r, 'precision'):<13} {xla:<3} {cell(r, 'images_per_s', '-'):>9} "
                     f"{cell(r, 'peak_memory_mb', '-'):>9} {cell(r, 'seconds'):>6}  {text[:150]}")
    lines += ["", "targets (issue 'Performance', for an H100/H200):"]
    lines += [f"  {r['target']:<14} {cell(r, 'ratio', '-'):>8}  {r['note']}" for r in rows if r["section"] == "targets"]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, two models: checks the script on any machine")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole run. Defaults to 450 (600 with --smoke).")
    parser.add_argument("--out", default=None,
                        help="CSV to append to. Defaults to benchmarks/results/gpu_check-<hardware>[-smoke].csv")
    parser.add_argument("--data", default=None, help="real cells for the input pipeline. Defaults to "
                        "$BLOODCANCER_DEV_CELLS or ../shared/data/cnmc-dev where present, else the synthetic cells")
    parser.add_argument("--sections", nargs="+", default=["throughput", "input_pipeline", "smoke_models"],
                        help="sections to run (environment always runs)")
    parser.add_argument("--keep", default=None, help="keep the synthetic data, run folders and logs in this folder")
    parser.add_argument("--allow-cpu", action="store_true", help="the full sizes even without a GPU (hours on a CPU)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rows", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-args", default="{}", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        child_args = json.loads(args.child_args)
        child_args["deadline"] = time.monotonic() + child_args.pop("deadline_in", 60)
        return child_main(args.child, args.rows, json.dumps(child_args))
    cfg = settings(args.smoke)
    budget = args.budget or (600 if args.smoke else 450)
    started = time.monotonic()
    deadline = started + budget
    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    # Each section may use at most its share of the budget (caps) and must leave the sections after it their share
    # (reserves); what a section leaves unused goes to the later ones.
    caps = {name: share * budget for name, share in cfg["caps"].items()}
    caps["environment"] = max(caps["environment"], 60)  # importing TensorFlow alone can take a minute on a busy machine
    reserves = {name: share * budget for name, share in cfg["reserves"].items()}
    def section_deadline(name): return min(time.monotonic() + caps[name], deadline - reserves.get(name, 0))
    stamp, commit = run_stamp(), git_commit()
    print(f"gpu_check {'--smoke ' if args.smoke else ''}started {stamp}, budget {budget:.0f} s, commit {commit}; "
          f"work folder {work}")

    rows = run_child("environment", "environment", dict(cfg=cfg), section_deadline("environment"), work)
    env = next((r for r in rows if r.get("section") == "environment" and not r.get("error")), {})
    hardware = env.get("hardware") or hardware_slug()
    on_gpu = bool(env.get("gpus"))
    print(f"hardware: {hardware}: {env.get('note', 'unknown (the environment section failed)')}")
    if not env:
        rows.append(dict(section="environment", error="the environment section failed (see the row above), so "
                         "nothing else ran: TensorFlow and bloodcancer must import (the project's requirements, with a "
                         "CUDA build of TensorFlow on a GPU machine)"))
    elif not on_gpu and not args.smoke and not args.allow_cpu:
        rows.append(dict(section="environment", error="TensorFlow sees no GPU: run this check on the GPU machine (a "
                         "TensorFlow build with CUDA and a driver), or use --smoke to check the script itself"))
    else:
        folder, failed = make_synthetic(work, cfg)
        rows += failed
        if "throughput" in args.sections:
            for precision, label in (("fp32", "fp32"), ("mixed", "mixed_xla")):
                rows += run_child("throughput", f"throughput_{label}", dict(cfg=cfg, precision=precision),
                                  section_deadline(label), work)
        if "input_pipeline" in args.sections:
            # The real cells where present (never in --smoke, unless asked for), else the synthetic ones
            real = Path(args.data) if args.data else (None if args.smoke else dev_cells())
            real = real if real is not None and real.is_dir() else None
            if folder is None and real is None:
                rows.append(dict(section="input_pipeline", error="no cells: neither real nor synthetic ones"))
            else:
                cells = dict(synthetic=str(folder) if folder else None, real_cells=str(real) if real else None)
                rows += run_child("input_pipeline", "input_pipeline", dict(cfg=cfg, **cells),
                                  section_deadline("input_pipeline"), work)
        if "smoke_models" in args.sections:
            if folder is None: rows.append(dict(section="smoke_models", error="no synthetic cells to train on"))
            else:
                models = cfg["smoke_models"] or env.get("paper_models")
                if not models: rows.append(dict(section="smoke_models", error="the paper's models are unknown: the "
                                                "environment section could not read bloodcancer.models.PAPER_MODELS"))
                else:
                    until = min(time.monotonic() + caps["smoke_models"], deadline)
                    rows += smoke_models(folder, cfg, models, until, work)
    rows += target_rows(rows, cfg, on_gpu)
    common = dict(run=stamp, hardware=hardware + ("-smoke" if args.smoke else ""), load_1min=load(), commit=commit)
    rows = [common | {k: v for k, v in row.items() if k not in ("hardware", "gpus", "paper_models")} for row in rows]
    out = Path(args.out) if args.out else results_file("gpu_check", hardware + ("-smoke" if args.smoke else ""))
    append_rows(out, rows, COLUMNS)
    print("\n" + summary(rows))
    print(f"\n{len(rows)} rows appended to {out}; {time.monotonic() - started:.0f} s of the {budget:.0f} s budget")
    if not args.keep: shutil.rmtree(work, ignore_errors=True)
    return 0 if not any(r.get("error") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
