"""Faults of the data layer, each caused for real, small and fast: decompression bombs in validation, training and
prediction; zip bombs, lying zip directories, damaged members, another archive into the same data folder, a data
folder that cannot be written; and prediction thresholds outside [0, 1]. The command-line cases run the installed
`bloodcancer` command and check its exit status and that standard error is one line without a traceback."""
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from bloodcancer.data import (UnsafeArchiveError, extract_archive, index_dataset, is_extracted, make_synthetic_cnmc,
                              validate_images)

BOMB_SIDE = 30_000  # the bomb: a 2.6 MB PNG declaring 30000 x 30000 pixels (2.7 GB decoded)


# ---------------------------------------------------------------- helpers

def bloodcancer(*args, cwd, preexec_fn=None):
    "Run the installed command as a user does (TensorFlow's C++ log kept off standard error)."
    exe = Path(sys.executable).with_name("bloodcancer")
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([str(exe), *map(str, args)], capture_output=True, cwd=cwd, env=env, preexec_fn=preexec_fn)
    # decoded here, not with text=True, whose universal newlines would turn a progress bar's \r into line breaks
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())

def one_line_error(result, command:str) -> str:
    "The single line a refused command prints on standard error (exit status 2, no traceback)."
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    # what a terminal shows: a progress bar redraws its line with \r
    shown = [line.rsplit("\r", 1)[-1].strip() for line in result.stderr.split("\n")]
    lines = [line for line in shown if line]
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, result.stderr[-2000:])
    assert lines[0].startswith(f"bloodcancer {command}: ")
    return lines[0]

def bytes_under(folder:Path) -> int:
    "Bytes of all files under `folder` (hidden ones included)."
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) if Path(folder).exists() else 0

def _chunk(kind:bytes, data:bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

def png_declaring(path:Path, width:int=BOMB_SIDE, height:int=BOMB_SIDE) -> Path:
    "A PNG of a few hundred bytes whose header declares width x height RGB pixels (valid chunks and CRCs)."
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + _chunk(b"IDAT", zlib.compress(bytes(4096))) + _chunk(b"IEND", b""))
    return path

def bmp_declaring(path:Path, side:int=BOMB_SIDE) -> Path:
    "A small real BMP whose header is patched to declare side x side pixels."
    Image.new("RGB", (8, 8), (120, 60, 200)).save(path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<ii", data, 18, side, side)
    path.write_bytes(bytes(data))
    return path

def jpeg_declaring(path:Path, side:int=BOMB_SIDE) -> Path:
    "A small real JPEG whose frame header is patched to declare side x side pixels."
    Image.new("RGB", (8, 8), (120, 60, 200)).save(path)
    data = bytearray(path.read_bytes())
    frame = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, frame + 5, side, side)
    path.write_bytes(bytes(data))
    return path

def tiff_declaring(path:Path, side:int=BOMB_SIDE) -> Path:
    "A small real TIFF whose width and length tags are patched to declare side x side pixels."
    Image.new("RGB", (8, 8), (120, 60, 200)).save(path)
    data = bytearray(path.read_bytes())
    assert data[:2] == b"II"
    ifd = struct.unpack_from("<I", data, 4)[0]
    for k in range(struct.unpack_from("<H", data, ifd)[0]):
        at = ifd + 2 + 12 * k
        if struct.unpack_from("<H", data, at)[0] in (256, 257): struct.pack_into("<HII", data, at + 2, 4, 1, side)
    path.write_bytes(bytes(data))
    return path

def write_cells(folder:Path, n:int, label:str="all", shade:int=0) -> list[Path]:
    "n real 450 x 450 RGB PNG cells with C-NMC names in `folder/label`."
    paths = []
    for k in range(n):
        path = folder/label/f"UID_{'H' if label == 'hem' else ''}{shade + 1}_1_{k + 1}_{label}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (450, 450), (100 + shade, 40 + 10 * k, 160)).save(path)
        paths.append(path)
    return paths

def zip_of(folder:Path, archive:Path, compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(archive, "w", compression) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file(): zf.write(path, path.relative_to(folder).as_posix())
    return archive

def zip_declaring(archive:Path, members:int, declared:int=0xFFFF_FFFF) -> Path:
    "A zip of `members` 10-byte files whose central directory says each holds `declared` bytes (a lying directory)."
    with zipfile.ZipFile(archive, "w") as zf:
        for k in range(members): zf.writestr(f"part{k}.bin", b"0123456789")
    data, at = bytearray(archive.read_bytes()), 0
    while (at := data.find(b"PK\x01\x02", at)) >= 0:
        struct.pack_into("<I", data, at + 24, declared)  # uncompressed size in the central directory
        at += 4
    archive.write_bytes(bytes(data))
    return archive

def assert_no_bomb_warning(caught):
    assert not [w for w in caught if "DecompressionBomb" in type(w.message).__name__ or "bomb" in str(w.message)]


# ---------------------------------------------------------------- decompression bombs

@pytest.fixture
def cells_with_bombs(tmp_path) -> Path:
    "Four real cells and one bomb of each format the data layer reads, as a class-folder tree."
    root = tmp_path/"cells"
    write_cells(root, 2, "all"); write_cells(root, 2, "hem")
    png_declaring(root/"all"/"UID_9_1_1_all.png")
    bmp_declaring(root/"all"/"UID_9_1_2_all.bmp")
    jpeg_declaring(root/"hem"/"UID_H9_1_1_hem.jpg")
    tiff_declaring(root/"hem"/"UID_H9_1_2_hem.tif")
    return root

def test_validate_reports_bombs_and_keeps_the_rest(cells_with_bombs):
    index = index_dataset(cells_with_bombs)
    assert len(index) == 8
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = validate_images(index)
    assert_no_bomb_warning(caught)
    assert len(report.clean) == 4 and not report.clean["path"].str.contains("UID_H?9_").any()
    assert sorted(report.problems["reason"]) == ["too large"] * 4
    assert report.problems["detail"].str.startswith(f"{BOMB_SIDE}x{BOMB_SIDE} = 900,000,000 pixels").all()

def test_index_validate_command_lists_the_bomb(cells_with_bombs, tmp_path):
    result = bloodcancer("index", cells_with_bombs, "--validate", "--out", tmp_path/"index.csv", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "8 images checked" in result.stdout and "4 usable; 4 too large" in result.stdout
    written = pd.read_csv(tmp_path/"index.csv", keep_default_na=False)
    assert len(written) == 8 and written["problem"].eq("too large").sum() == 4

def test_input_pipeline_names_the_bomb(cells_with_bombs):
    from bloodcancer.data import DataValidationError
    from bloodcancer.preprocess import check_readable
    index = index_dataset(cells_with_bombs)
    good = index[~index["path"].str.contains("UID_H?9_")]
    assert len(check_readable(good)) == 4
    with warnings.catch_warnings(record=True) as caught, pytest.raises(DataValidationError) as refused:
        warnings.simplefilter("always")
        check_readable(index)
    assert_no_bomb_warning(caught)
    message = str(refused.value)
    assert message.startswith("4 of 8 images cannot be read") and message.count(": too large (") == 4

@pytest.fixture(scope="module")
def synthetic_with_bomb(tmp_path_factory) -> Path:
    "A small synthetic C-NMC with a decompression bomb among its training cells."
    data = make_synthetic_cnmc(tmp_path_factory.mktemp("synthetic"), image_size=64, subjects_all=3, subjects_hem=3,
                               cells_per_subject=4)
    png_declaring(data/"C-NMC_Leukemia"/"training_data"/"fold_0"/"all"/"UID_1_9_9_all.png")
    return data

@pytest.fixture(scope="module")
def run(synthetic_with_bomb, tmp_path_factory) -> Path:
    "AlexNet trained for one epoch on `synthetic_with_bomb`."
    from bloodcancer.train import train
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(model="AlexNet", data=synthetic_with_bomb, image_size=32, epochs=1, weights=None,
                     outputs=tmp_path_factory.mktemp("outputs"), verbose=0)

def test_training_leaves_the_bomb_out(run, synthetic_with_bomb):
    from bloodcancer.data import load_split
    index = index_dataset(synthetic_with_bomb)
    training_files = int(index["source_split"].str.startswith("fold_").sum())
    assert training_files == 3 * 4 + 3 * 4 + 1
    split = load_split(run)
    assert (run/"model.keras").is_file()
    assert len(split) == training_files - 1 and not split["path"].str.endswith("UID_1_9_9_all.png").any()

@pytest.fixture(scope="module")
def folder_with_bomb(run, tmp_path_factory) -> Path:
    "Three cells of the run's test split and a bomb, to predict."
    from bloodcancer.data import load_split
    folder = tmp_path_factory.mktemp("to-predict")
    split = load_split(run)
    for k, path in enumerate(split[split["split"].eq("test")]["path"].head(3)): shutil.copy(path, folder/f"cell{k}.bmp")
    png_declaring(folder/"bomb.png")
    return folder

def test_predict_command_lists_the_bomb_and_predicts_the_rest(run, folder_with_bomb, tmp_path):
    result = bloodcancer("predict", folder_with_bomb, "--model", run, "--out", tmp_path/"predictions.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "DecompressionBomb" not in result.stderr
    assert "3 cells predicted" in result.stdout and "1 files not read" in result.stdout
    table = pd.read_csv(tmp_path/"predictions.csv", keep_default_na=False).set_index("path")
    assert table.loc[str(folder_with_bomb/"bomb.png"), "problem"].startswith("too large: 30000x30000")
    assert table["label"].isin(["all", "hem"]).sum() == 3

@pytest.mark.parametrize("threshold", ["5", "-1", "nan"])
def test_predict_command_refuses_a_threshold_outside_0_1(run, folder_with_bomb, tmp_path, threshold):
    result = bloodcancer("predict", folder_with_bomb, "--model", run, "--threshold", threshold,
                         "--out", tmp_path/"p.csv", cwd=tmp_path)
    line = one_line_error(result, "predict")
    assert f"threshold={float(threshold)!r} is not a probability between 0 and 1: pass a value from 0 to 1" in line
    assert not (tmp_path/"p.csv").exists()


# ---------------------------------------------------------------- archives

def test_another_archive_into_the_same_data_folder_is_extracted_beside(tmp_path):
    first, second = tmp_path/"first", tmp_path/"second"
    write_cells(first, 3, "all"); write_cells(second, 2, "hem", shade=5)
    zip_a, zip_b, data = zip_of(first, tmp_path/"A.zip"), zip_of(second, tmp_path/"B.zip"), tmp_path/"data"
    outputs = [bloodcancer("download", "--source", z, "--data", data, cwd=tmp_path) for z in (zip_a, zip_b, zip_a)]
    assert [r.returncode for r in outputs] == [0, 0, 0], [r.stderr[-2000:] for r in outputs]
    folders = [Path(r.stdout.split("C-NMC is in ")[1].split(";")[0]) for r in outputs]
    assert folders[0] != folders[1] and folders[2] == folders[0] and folders[1].parent == folders[0].parent == data
    assert [len(index_dataset(f)) for f in folders] == [3, 2, 3]
    assert set(index_dataset(folders[1])["label"]) == {"hem"}

def test_extract_into_another_archives_folder_is_refused(tmp_path):
    first, second = tmp_path/"first", tmp_path/"second"
    write_cells(first, 3, "all"); write_cells(second, 2, "hem", shade=5)
    target = extract_archive(zip_of(first, tmp_path/"A.zip"), tmp_path/"cnmc", progress=False)
    with pytest.raises(FileExistsError, match="holds the extraction of .*A.zip"):
        extract_archive(zip_of(second, tmp_path/"B.zip"), target, progress=False)
    assert len(index_dataset(target)) == 3
    assert is_extracted(target, tmp_path/"A.zip") and not is_extracted(target, tmp_path/"B.zip")

def test_zip_bomb_is_refused_before_writing(tmp_path):
    bomb = tmp_path/"bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("C-NMC_Leukemia/zeros.bmp", bytes(64_000_000))
    assert bomb.stat().st_size < 100_000  # 64 MB of zeros
    result = bloodcancer("download", "--source", bomb, "--data", tmp_path/"data", cwd=tmp_path)
    line = one_line_error(result, "download")
    assert "a likely zip bomb; nothing was extracted" in line and "over the limit of 100:1" in line
    assert bytes_under(tmp_path/"data") == 0

def test_lying_zip_directory_is_refused_by_the_size_limit(tmp_path):
    liar = zip_declaring(tmp_path/"liar.zip", members=6)  # 6 x 4.3 GB declared: 25.8 GB, over C-NMC's 18.4 GB limit
    result = bloodcancer("download", "--source", liar, "--data", tmp_path/"data", cwd=tmp_path)
    line = one_line_error(result, "download")
    assert "would take 25.8 GB, over the limit of 18.4 GB" in line
    assert bytes_under(tmp_path/"data") == 0

def test_size_limits_are_arguments(tmp_path):
    source = tmp_path/"cells"
    write_cells(source, 3)
    archive = zip_of(source, tmp_path/"cells.zip")
    declared = sum(i.file_size for i in zipfile.ZipFile(archive).infolist())
    with pytest.raises(UnsafeArchiveError, match="over the limit of 1.0 kB; nothing was extracted"):
        extract_archive(archive, tmp_path/"small", progress=False, max_bytes=1_000)
    assert declared > 1_000
    assert not (tmp_path/"small").exists()
    assert len(index_dataset(extract_archive(archive, tmp_path/"large", progress=False, max_bytes=10**9))) == 3

def test_free_space_is_checked_before_writing(tmp_path):
    from bloodcancer.data import ExtractionError
    free = shutil.disk_usage(tmp_path).free
    liar = zip_declaring(tmp_path/"huge.zip", members=free // 0xFFFF_FFFF + 2)
    with pytest.raises(ExtractionError, match="free: free space or pass a data folder on another disk"):
        extract_archive(liar, tmp_path/"data"/"cnmc", progress=False, max_bytes=10**18, max_ratio=10**18)
    assert bytes_under(tmp_path/"data") == 0

def test_damaged_member_is_one_line_and_nothing_is_kept(tmp_path):
    source = tmp_path/"cells"
    write_cells(source, 3)
    damaged = zip_of(source, tmp_path/"damaged.zip")
    raw = bytearray(damaged.read_bytes())
    with zipfile.ZipFile(damaged) as zf: second = zf.infolist()[1]
    raw[second.header_offset + 30 + len(second.filename) + 100] ^= 0xFF  # a byte of the second member's data
    damaged.write_bytes(bytes(raw))
    result = bloodcancer("download", "--source", damaged, "--data", tmp_path/"data", cwd=tmp_path)
    line = one_line_error(result, "download")
    assert str(damaged) in line and f"member {second.filename!r} is damaged (Bad CRC-32" in line
    assert bytes_under(tmp_path/"data") == 0 and list((tmp_path/"data").iterdir()) == []

def test_data_folder_under_a_file_is_one_line(tmp_path):
    (tmp_path/"a-file").write_text("not a folder")
    write_cells(tmp_path/"cells", 1)
    archive = zip_of(tmp_path/"cells", tmp_path/"c.zip")
    result = bloodcancer("download", "--source", archive, "--data", tmp_path/"a-file"/"data", cwd=tmp_path)
    line = one_line_error(result, "download")
    assert str(tmp_path/"a-file"/"data") in line and "part of that path is a file, not a folder" in line

def test_read_only_data_folder_is_one_line(tmp_path):
    data = tmp_path/"data"
    data.mkdir()
    data.chmod(0o555)
    try:
        try: (data/"probe").write_text("x")
        except PermissionError: pass
        else: pytest.skip("this user can write into a read-only folder (root ignores the permission bits); "
                          "test_data_folder_under_a_file_is_one_line and the disk-full test cover unwritable targets")
        write_cells(tmp_path/"cells", 1)
        archive = zip_of(tmp_path/"cells", tmp_path/"c.zip")
        result = bloodcancer("download", "--source", archive, "--data", data, cwd=tmp_path)
        line = one_line_error(result, "download")
        assert str(data) in line and "read-only or not yours: pass a data folder you can write to" in line
        assert list(data.iterdir()) == []
    finally: data.chmod(0o755)

def test_disk_full_during_extraction_is_one_line_and_frees_the_space(tmp_path):
    "A file-size limit (RLIMIT_FSIZE) makes the write fail part-way as a full disk does, for root too."
    source = tmp_path/"cells"
    (source/"all").mkdir(parents=True)
    (source/"all"/"UID_1_1_1_all.bmp").write_bytes(os.urandom(3_000_000))
    archive = zip_of(source, tmp_path/"cells.zip")
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failing write instead of a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
    result = bloodcancer("download", "--source", archive, "--data", tmp_path/"data", cwd=tmp_path,
                         preexec_fn=limit_file_size)
    line = one_line_error(result, "download")
    assert "File too large; free space there (the archive expands to 3.0 MB)" in line
    assert bytes_under(tmp_path/"data") == 0
