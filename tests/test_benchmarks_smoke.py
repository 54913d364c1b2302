"""Every benchmark script runs against the current library: `--smoke` (tiny synthetic cells, one or two steps) exits 0
and writes the CSV it promises, with finite figures where figures must be (no timing is asserted). gpu_check.py has
its own tests in test_benchmarks.py."""
import csv
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT/"benchmarks"/"results"


def number(row: dict, column: str) -> float:
    "The value of `column` as a finite float (a clear failure naming the row otherwise)."
    value = float(row[column])
    assert math.isfinite(value), (column, row)
    return value


def check_augmentations(rows):
    from bloodcancer.preprocess import AUGMENTATIONS
    names = [n for n in AUGMENTATIONS if n != "mixup"] + ["all but mixup", "mixup"]
    assert [r["augmentation"] for r in rows] == names
    for row in rows:
        assert 0 < number(row, "ms_per_image_best") <= number(row, "ms_per_image_median"), row
        assert (row["image_size"], row["batch_size"], row["repeats"]) == ("32", "4", "1")
        assert row["source"].startswith("SYNTHETIC cells (not C-NMC) from "), row["source"]  # never shown as C-NMC


def check_preprocess_ops(rows):
    operations = [r["operation"] for r in rows]
    assert len(operations) == 10 and operations[0].startswith("file check")
    for kind in ("decode, OpenCV", "decode, TensorFlow", "denoise median at 32", "denoise wavelet at 32",
                 "augment at 32 (augment_images, batches of 4)"):
        assert sum(o.startswith(kind) for o in operations) == 1, (kind, operations)
    for row in rows:
        assert number(row, "images") >= 1 and number(row, "cpu_ms_per_image") > 0, row
        assert number(row, "wall_ms_per_image") > 0, row
        assert " synthetic cells from " in row["data"], row["data"]
    images = {r["operation"].split(" at ")[0]: int(r["images"]) for r in rows}
    assert images["denoise median"] == 8 and images["denoise wavelet"] == 1  # a tenth of the cells, at least one


def check_input_pipeline(rows):
    methods = {r["method"]: r for r in rows}
    timed = [r for r in rows if not r["method"].startswith("ratio")]
    assert len(timed) == 5 and len(rows) == 8
    for row in timed:
        assert number(row, "images_per_s") > 0 and number(row, "cpu_ms_per_image") > 0, row
        assert int(row["images"]) == int(timed[0]["images"]) > 0  # every method reads the same cells
    assert " synthetic cells from " in rows[0]["data"]
    cached, generator = (number(methods[m], "images_per_s") for m in
                         ("(a) ours, cached epochs", "(b) ImageDataGenerator.flow_from_dataframe"))
    ratio = number(methods["ratio: cached epochs / (b)"], "ratio")
    assert ratio == pytest.approx(cached / generator, rel=0.02, abs=0.006)
    assert methods["ratio: cached epochs / (b)"]["target"] == ">= 5x"


def check_train_throughput(rows):
    variants = {r["variant"]: r for r in rows}
    callbacks = [v.removeprefix("callback ") for v in variants if v.startswith("callback ")]
    assert {"BestCheckpoint", "RunHistory", "BackupAndRestore", "ResumableEarlyStopping"} <= set(callbacks)
    assert {"model.fit, float32", "ours: bloodcancer.train.train", "plain: tf_keras model.fit", "plain + all"} <= set(
        variants)
    for name in ("model.fit, float32", "ours: bloodcancer.train.train", "plain: tf_keras model.fit", "plain + all"):
        assert number(variants[name], "images_per_s") > 0, variants[name]
    for name in callbacks: assert number(variants[f"callback {name}"], "epoch_s") >= 0
    ours, plain = variants["ours: bloodcancer.train.train"], variants["plain: tf_keras model.fit"]
    assert number(ours, "epoch_s") > 0 and number(plain, "epoch_s") > 0
    assert number(ours, "ratio_to_plain") == pytest.approx(number(plain, "epoch_s") / number(ours, "epoch_s"),
                                                           rel=0.01)
    assert "synthetic" in ours["data"] and "synthetic" in variants["model.fit, float32"]["data"]


def check_tta_ensemble(rows):
    assert [(r["member"], r["tta"]) for r in rows] == [(m, t) for m in ("seed 0", "seed 1", "ensemble of 2")
                                                       for t in ("False", "True")]
    for row in rows:
        for column in ("f1_at_0_5", "f1_at_val_threshold", "auc"): assert 0 <= number(row, column) <= 1, row
        assert 0 < number(row, "val_threshold") < 1 and number(row, "test_cells") > 0, row
        assert " synthetic cells from " in row["data"] and row["split"].startswith("subject-disjoint")
    for row in rows[:4]:
        assert number(row, "train_s") > 0 and number(row, "test_predict_s") > 0 and row["epochs_trained"] == "1"


def check_structure(rows):
    import inspect
    from bloodcancer.preprocess import make_dataset
    assert len(rows) == 1 and rows[0]["commit"] and rows[0]["run"]
    row = rows[0]
    lines = {p.stem: len(p.read_text().splitlines()) for p in (ROOT/"bloodcancer").glob("*.py") if p.stem != "_modidx"}
    assert int(row["make_dataset_params"]) == len(inspect.signature(make_dataset).parameters)
    assert (int(row["lines"]), int(row["modules"])) == (sum(lines.values()), len(lines))
    assert int(row["largest_lines"]) == lines[row["largest_module"]] == max(lines.values())
    assert 0 < int(row["shown"]) <= int(row["public_definitions"]) and number(row, "defs_per_export_cell") >= 1
    assert int(row["upward_arrows"]) <= int(row["arrows"]) and int(row["circles"]) >= 0


SCRIPTS = {  # script: (columns its CSV promises, the check of its rows)
    "augmentations.py": (["augmentation", "ms_per_image_best", "ms_per_image_median", "image_size", "batch_size",
                          "repeats", "source", "machine"], check_augmentations),
    "preprocess_ops.py": (["run", "hardware", "data", "operation", "images", "cpu_ms_per_image", "cpu_ms_spread",
                           "wall_ms_per_image", "load_1min", "note", "commit"], check_preprocess_ops),
    "input_pipeline.py": (["run", "hardware", "data", "image_size", "batch", "method", "images", "images_per_s",
                           "images_per_s_spread", "cpu_ms_per_image", "ratio", "target", "load_1min", "note", "commit"],
                          check_input_pipeline),
    "train_throughput.py": (["run", "hardware", "data", "model", "image_size", "batch", "variant", "epochs_timed",
                             "epoch_s", "epoch_s_all", "images_per_s", "ratio_to_plain", "epoch_cpu_s",
                             "ratio_to_plain_cpu", "setup_s", "finish_s", "load_1min", "note", "commit"],
                            check_train_throughput),
    "tta_ensemble.py": (["run", "hardware", "data", "split", "model", "image_size", "batch", "epochs_max", "member",
                         "tta", "epochs_trained", "test_cells", "f1_at_0_5", "f1_at_val_threshold", "auc",
                         "val_threshold", "train_s", "test_predict_s", "load_1min", "note", "commit"],
                        check_tta_ensemble),
    "structure.py": (["run", "commit", "lines", "modules", "largest_module", "largest_lines", "arrows", "circles",
                      "upward_arrows", "function_imports", "path_literals", "config_reads", "make_dataset_params",
                      "public_definitions", "shown", "defs_per_export_cell", "notebooks_importing_later"],
                     check_structure),
}


def test_every_benchmark_script_has_a_smoke_test():
    scripts = {p.name for p in (ROOT/"benchmarks").glob("*.py") if not p.name.startswith(("_", "subject_cv"))}
    assert scripts - {"gpu_check.py"} == set(SCRIPTS)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_smoke_run_writes_the_promised_csv(script, tmp_path):
    columns, check = SCRIPTS[script]
    out = tmp_path/"nested"/"smoke.csv"
    before = sorted((p.name, p.stat().st_size) for p in RESULTS.glob("*"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, str(ROOT/"benchmarks"/script), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, f"{script} --smoke failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert sorted((p.name, p.stat().st_size) for p in RESULTS.glob("*")) == before  # never into benchmarks/results
    with out.open() as handle: rows = list(csv.DictReader(handle))
    assert rows and list(rows[0]) == columns
    if "hardware" in columns:
        assert all(r["hardware"].endswith("-smoke") for r in rows) and len({r["run"] for r in rows}) == 1
    check(rows)


def structure(*arguments, cwd=ROOT) -> tuple[list[str], dict]:
    "The lines `benchmarks/structure.py --smoke` prints and the figures of its last line (`key=value ...`)."
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, str(ROOT/"benchmarks"/"structure.py"), "--smoke", *arguments],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert all("=" in pair for pair in lines[-1].split()), lines[-1]
    return lines, dict(pair.split("=", 1) for pair in lines[-1].split())


def test_structure_prints_its_figures_and_their_row(tmp_path):
    import inspect
    from bloodcancer.preprocess import make_dataset
    lines, figures = structure("--out", str(tmp_path/"structure.csv"))
    with (tmp_path/"structure.csv").open() as handle: row, = csv.DictReader(handle)
    assert figures == {k: v for k, v in row.items() if k not in ("run", "commit")}  # the row is the last line
    printed = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines[:-1]}
    assert printed["make_dataset parameters"] == str(len(inspect.signature(make_dataset).parameters))
    largest = re.fullmatch(r"(\w+) \((\d+) lines\)", printed["largest module"])
    assert int(largest[2]) == len((ROOT/"bloodcancer"/f"{largest[1]}.py").read_text().splitlines())
    assert printed["library lines"].startswith(f"{figures['lines']} in {figures['modules']} modules")


def test_structure_counts_what_its_docstring_says(tmp_path):
    "A made-up checkout with one of each thing counted: the figures of `--root` are those known."
    import json
    package, notebooks = tmp_path/"bloodcancer", tmp_path/"nbs"
    package.mkdir(), notebooks.mkdir()
    sources = {
        "__init__": "",
        "_modidx": "from .core import f\n",  # never read
        "core": "from .data import g  # the largest module: 5 lines\n\n"
                "def f(config, run):\n"
                "    from bloodcancer.runs import RUN\n"
                "    return config.get('a'), config['b'], config[0], run/'model.keras', f'{run}/split.csv'\n",
        "data": "import importlib\nfrom bloodcancer.core import f\nMODEL = 'model.keras'\n"
                "def g(): return importlib.import_module('bloodcancer.runs')\n",
        "runs": "RUN = 'model.keras'\ndef h(config): return config.get('a')\n",  # runs.py may spell them
        "preprocess": "def make_dataset(a, b=1, *rest, c, **more): pass\n",
    }
    for name, source in sources.items(): (package/f"{name}.py").write_text(source)
    output = [dict(output_type="stream", name="stdout", text="1\n")]
    cell = lambda source, outputs=(): dict(cell_type="code", source=source, outputs=list(outputs))
    books = {"00_core": [cell("#| default_exp core"), cell("#| export\ndef f(): pass\ndef _h(): pass"),
                         cell("f()", output), cell("#| export\nG = 1"), cell("#| hide\nG", output),
                         cell("from bloodcancer.data import g")],
             "01_data": [cell("#| default_exp data"), cell("%time 1\nfrom bloodcancer.core import f", output)],
             "02_preprocess": [cell("#| default_exp preprocess")], "02b_runs": [cell("#| default_exp runs")]}
    for name, cells in books.items(): (notebooks/f"{name}.ipynb").write_text(json.dumps(dict(cells=cells)))
    lines, figures = structure("--root", str(tmp_path), "--out", str(tmp_path/"structure.csv"), cwd=tmp_path)
    assert figures == dict(lines=str(sum(len(s.splitlines()) for n, s in sources.items() if n != "_modidx")),
                           modules="5", largest_module="core", largest_lines="5", arrows="4", circles="1",
                           upward_arrows="3", function_imports="2", path_literals="3", config_reads="2",
                           make_dataset_params="5", public_definitions="2", shown="1", defs_per_export_cell="1.5",
                           notebooks_importing_later="1")
    assert "circles: 1; core <-> data" in lines
    assert "notebooks importing a later notebook's module: 1; 00_core -> data" in lines
