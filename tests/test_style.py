"""The code reads like its anchors (nbdev, fastcore): lines of at most 120 characters, in the library, the tests and
the benchmarks. `__all__`, which nbdev_export writes and wraps itself, is the one exception."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def long_lines(files) -> list[str]:
    "`file:line: n characters` for each line over 120 characters, `__all__` (wrapped by nbdev_export) left out."
    long = []
    for file in files:
        in_all = False
        for number, line in enumerate(file.read_text().splitlines(), 1):
            in_all = line.startswith("__all__ = ") or (in_all and line.startswith(" " * 11 + "'"))
            if len(line) > 120 and not in_all: long.append(f"{file.relative_to(ROOT)}:{number}: {len(line)} characters")
    return long


def test_library_lines_are_at_most_120_characters():
    modules = [m for m in sorted((ROOT/"bloodcancer").glob("*.py")) if m.name != "_modidx.py"]
    long = long_lines(modules)
    assert not long, "lines over 120 characters (edit the notebook, then nbdev_export):\n" + "\n".join(long)


def test_tests_and_benchmarks_lines_are_at_most_120_characters():
    files = sorted([*(ROOT/"tests").glob("*.py"), *(ROOT/"benchmarks").glob("*.py"), ROOT/"setup.py"])
    assert len(files) > 10  # the globs found the folders
    long = long_lines(files)
    assert not long, "lines over 120 characters (wrap them):\n" + "\n".join(long)


def test_every_notebook_exports_the_module_of_its_name():
    import re
    for notebook in sorted((ROOT/"nbs").glob("[0-9]*.ipynb")):
        found = re.search(r"#\|\s*default_exp\s+(\w+)", notebook.read_text())
        stem = notebook.stem.split("_", 1)[1]
        assert found and found[1] == stem, f"{notebook.name} exports {found and found[1]}, not {stem}"
