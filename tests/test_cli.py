"""The installed `bloodcancer` command, run as a user runs it."""
import subprocess, sys
from pathlib import Path


def bloodcancer(*args, check=True):
    exe = Path(sys.executable).with_name("bloodcancer")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, check=check)


def test_synth_then_index_round_trips(tmp_path):
    made = bloodcancer("synth", tmp_path/"syn", "--seed", "3", "--cells-per-subject", "3")
    assert "not real cells" in made.stdout
    summary = bloodcancer("index", tmp_path/"syn", "--validate", "--out", tmp_path/"index.csv").stdout
    assert "dataset: synthetic (layout: kaggle)" in summary
    assert "no problems" in summary and (tmp_path/"index.csv").stat().st_size > 0


def test_index_dev_cells(dev_cells, dev_manifest):
    out = bloodcancer("index", dev_cells).stdout
    counts = lambda cells: f"{len(cells):,} images, {cells['subject'].str.upper().nunique()} subjects"
    assert counts(dev_manifest) in out  # "2,638 images, 26 subjects" for the development set
    for label in ("all", "hem"): assert f"{label}: {counts(dev_manifest[dev_manifest['class'].eq(label)])}" in out


def test_download_without_credentials_explains(tmp_path, monkeypatch):
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"): monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path)); monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    result = bloodcancer("download", "--data", tmp_path/"data", check=False)
    assert result.returncode == 2
    assert "No Kaggle credentials found" in result.stderr and "--source PATH" in result.stderr
    assert "Traceback" not in result.stderr
