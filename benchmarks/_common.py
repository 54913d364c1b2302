"""What the benchmark scripts share: where the real cells are, what machine this is, and where the results go.

Every script appends its rows to `benchmarks/results/<script>-<hardware>.csv` (never overwriting an earlier run: each
row carries the time of its run, the git commit and the machine's load), so that prose quoting a figure can link to
the file it came from. With `--smoke` a script runs at tiny sizes on tiny synthetic cells (seconds, any machine: it
checks the script, its figures mean nothing) and writes to `--out` or a temporary folder, never to benchmarks/results/.
"""
from __future__ import annotations

import csv
import datetime
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bloodcancer.core import DEV_CELLS_ENV, dev_cells as find_dev_cells

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT/"benchmarks"/"results"


def dev_cells() -> Path:
    """The real development cells, never the 48-cell sample (`bloodcancer.core.dev_cells(sample=False)`:
    $BLOODCANCER_DEV_CELLS where set, else ../shared/data/cnmc-dev beside the repository); where they are absent, the
    folder they were looked for in, so that a benchmark can say where."""
    found = find_dev_cells(sample=False)
    return found or Path(os.environ.get(DEV_CELLS_ENV) or ROOT.parent/"shared"/"data"/"cnmc-dev")


def cells_folder(data: str | Path | None) -> Path:
    "The folder `data` (relative paths from the repository root; None: `dev_cells()`), or exit with an explanation."
    folder = dev_cells() if data is None else Path(data)
    folder = (folder if folder.is_absolute() else ROOT/folder).resolve()
    if not folder.is_dir():
        sys.exit(f"skipped: no cells at {folder}. This benchmark measures real C-NMC cells (a folder with all/ and "
                 f"hem/ subfolders), which exist only on the developers' machines: set {DEV_CELLS_ENV} or pass "
                 "--data PATH.")
    return folder


def hardware_slug(gpu_name: str | None = None, gpus: int = 1) -> str:
    "`nvidia-h200` for a GPU name (`2x-nvidia-h100-80gb-hbm3` for two), else `cpu-<n>cores`."
    if not gpu_name: return f"cpu-{os.cpu_count()}cores"
    slug = re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-")
    return slug if gpus == 1 else f"{gpus}x-{slug}"


def tensorflow_hardware() -> tuple[str, str]:
    "(slug, description) of the first GPU TensorFlow sees, or of the CPU."
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus: return hardware_slug(), f"CPU ({os.cpu_count()} cores), TensorFlow {tf.__version__}"
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    return hardware_slug(name, len(gpus)), f"{len(gpus)} x {name}, TensorFlow {tf.__version__}"


def load() -> float:
    "The machine's load average over the last minute (other processes compete for the cores when it exceeds 0)."
    return round(os.getloadavg()[0], 2)


def git_commit(root: str | Path = ROOT) -> str:
    "The short commit of the repository `root`, `+changes` when tracked files differ from it; empty without git."
    def git(*arguments):
        return subprocess.run(["git", "-C", str(root), *arguments], capture_output=True, text=True, timeout=10)
    try:
        out = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return out.stdout.strip() + ("+changes" if dirty else "") if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError): return ""


def run_stamp() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def results_file(script: str, hardware: str, folder: str | Path | None = None) -> Path:
    "`<folder>/<script>-<hardware>.csv`; the folder defaults to benchmarks/results/."
    return Path(folder or RESULTS)/f"{script}-{hardware}.csv"


def append_rows(path: str | Path, rows: list[dict], columns: list[str]) -> Path:
    "Append `rows` (missing keys empty) to the CSV at `path`, writing the header when the file is new."
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        if new: writer.writeheader()
        for row in rows: writer.writerow({key: ("" if row.get(key) is None else row.get(key)) for key in columns})
    return path


def parse_with_smoke(parser, argv, smoke: dict, rows: str = "; rows to --out or a temporary folder"):
    "Add `--smoke` to `parser` and parse `argv`: with it, `smoke` replaces the defaults it names (given options win)."
    parser.add_argument("--smoke", action="store_true", help=f"check the script in seconds: tiny synthetic cells "
                        f"(unless --data), {smoke}{rows}")
    args = parser.parse_args(argv)
    if args.smoke:
        parser.set_defaults(**smoke)
        args = parser.parse_args(argv)
    return args


def smoke_cells() -> Path:
    "Tiny synthetic cells for `--smoke` (`bloodcancer.demo.tiny_cnmc`: 64-pixel cells, not C-NMC), cached."
    from bloodcancer.demo import tiny_cnmc
    return tiny_cnmc()


def output_csv(script: str, hardware: str, out: str | Path | None, smoke: bool) -> Path:
    "The CSV a run appends to: `out`; else with `smoke` one in a new temporary folder; else `results_file`."
    if out: return Path(out)
    if smoke: return Path(tempfile.mkdtemp(prefix=f"{script}-smoke-"))/f"{script}-{hardware}.csv"
    return results_file(script, hardware)
