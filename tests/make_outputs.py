"""Regenerate the outputs committed in the notebooks, so that the docs site and GitHub show each page's tables and
figures. Each notebook's examples are executed as `nbdev_test` executes them (in examples mode: `IN_TEST=1`; the
`#| run` cells of the pipeline steps, `eval: false` cells and the `tst_flags` cells are skipped), on the
deterministic synthetic demo data and, where an example shows them, the real development cells. This machine's
folders in text outputs are shown as `<tmp>`, `<project>`, `<shared>` and `~`; the outputs are then checked: none
may hold a local absolute path. Run from the repository root:

    python tests/make_outputs.py                 # every notebook
    python tests/make_outputs.py nbs/05_figures.ipynb
"""
import os, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL = re.compile(r"(/tmp/|/var/folders/|/home/|/root/|/work/|[A-Z]:\\\\Users\\\\)")

def local_paths(nb) -> list[str]:
    "Lines of `nb`'s outputs that show a path of this machine."
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))
            found += [line for line in text.splitlines() if LOCAL.search(line)]
    return found

def placeholders() -> list[tuple[re.Pattern, str]]:
    "This machine's folders, as patterns, and the placeholder each is shown as; applied in this order."
    import tempfile
    tmp = re.escape(tempfile.gettempdir())
    return [(re.compile(tmp + r"/tmp[\w-]+"), "<tmp>"),  # an example's temporary folder: its name changes each run
            (re.compile(tmp), "<tmp>"), (re.compile(re.escape(str(ROOT))), "<project>"),
            (re.compile(re.escape(str(ROOT.parent/"shared"))), "<shared>"),
            (re.compile(re.escape(str(Path.home()))), "~")]

def without_local_paths(nb):
    "Replace this machine's folders in the text outputs of `nb` by placeholders (images are untouched)."
    subs = placeholders()
    def clean(text):
        joined = "".join(text) if isinstance(text, list) else text
        for pattern, name in subs: joined = pattern.sub(name, joined)
        return joined
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if "text" in output: output["text"] = clean(output["text"])
            for kind in ("text/plain", "text/html", "text/markdown"):
                if kind in output.get("data", {}): output["data"][kind] = clean(output["data"][kind])
            if "traceback" in output: output["traceback"] = [clean(line) for line in output["traceback"]]

def regenerate(path: Path):
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    from nbdev.config import get_config
    from nbdev.process import NBProcessor
    skip = set(get_config().tst_flags.split())
    def no_eval(cell):
        if cell.cell_type != "code": return True
        directives = getattr(cell, "directives_", {}) or {}
        if directives.get("eval:", [""])[0].lower() == "false": return True
        return bool(skip & directives.keys())
    from nbdev.frontmatter import FrontmatterProc
    nb = NBProcessor(path, procs=FrontmatterProc, process=True).nb  # parses directives, as nbdev_test does
    for cell in nb.cells:
        if cell.cell_type == "code": cell.outputs, cell.execution_count = [], None
    shell = CaptureShell(path)
    cwd = os.getcwd()
    try:
        os.chdir(path.parent)
        shell.run_all(nb, exc_stop=True, preproc=no_eval)
    finally: os.chdir(cwd)
    stored = read_nb(path)  # write the outputs into the notebook as it is on disk (sources untouched)
    by_id = {cell.get("id"): cell for cell in nb.cells}
    for cell in stored.cells:
        if cell.cell_type == "code" and cell.get("id") in by_id:
            # only examples are shown on the page; a hidden test's warnings or a definition's output are not kept
            shown = not cell.source.startswith("#|") and "parameters" not in cell.metadata.get("tags", [])
            cell.outputs = by_id[cell["id"]].get("outputs", []) if shown else []
            cell.execution_count = None
    without_local_paths(stored)
    leaks = local_paths(stored)
    if leaks:
        sys.exit(f"{path.name}: outputs show local paths; print them relative or replaced:\n" + "\n".join(leaks[:10]))
    write_nb(stored, path)
    with_output = sum(bool(c.get('outputs')) for c in stored.cells if c.cell_type == 'code')
    print(f"{path.name}: {with_output} cells with output")

if __name__ == "__main__":
    os.environ["IN_TEST"] = "1"  # examples mode, as nbdev_test declares it
    os.environ.setdefault("MPLBACKEND", "Agg")
    notebooks = [Path(p).resolve() for p in sys.argv[1:]] or sorted((ROOT/"nbs").glob("*.ipynb"))
    for notebook in notebooks: regenerate(notebook)
    os.chdir(ROOT)
    os.system(f"{Path(sys.executable).with_name('nbdev_clean')}")
