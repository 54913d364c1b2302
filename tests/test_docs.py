"""The docs site's notebook processing, minus Quarto's rendering (Quarto runs only in the deploy workflow).

nbdev's `proc_nbs` applies the processors that turn each notebook into the page Quarto renders (show_doc for every
exported name, hidden cells, links): a notebook that would break the site fails here first.
"""
import json, os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_docs_processing_without_quarto(monkeypatch):
    from nbdev.serve import proc_nbs
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("IN_TEST", "1")  # nbdev sets it while it runs cells: the tests after this one must not see it
    cache = proc_nbs(path=str(ROOT/"nbs"), n_workers=0, force=True)
    pages = sorted(p.name for p in Path(cache).glob("*.ipynb"))
    assert pages == sorted(p.name for p in (ROOT/"nbs").glob("*.ipynb"))
    data_page = json.loads((Path(cache)/"01_data.ipynb").read_text())
    rendered = "".join("".join(c["source"]) for c in data_page["cells"])
    assert "index_dataset" in rendered and "#| export" not in rendered


def test_every_notebook_has_title_and_subtitle():
    for notebook in sorted((ROOT/"nbs").glob("*.ipynb")):
        first = "".join(json.loads(notebook.read_text())["cells"][0]["source"])
        assert first.startswith("# ") and "\n> " in first, f"{notebook.name} must start with '# Title' and '> subtitle'"
