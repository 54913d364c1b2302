"""Render README.md from nbs/index.ipynb without Quarto (the docs site renders the same notebook with Quarto).

Markdown cells are copied as they are; code cells without nbdev directives become fenced Python blocks.
`python tests/make_readme.py` writes README.md; `--check` exits 1 when README.md differs from the notebook.
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def render(notebook: Path = ROOT/"nbs"/"index.ipynb") -> str:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    parts = []
    for cell in cells:
        source = "".join(cell["source"]).strip()
        if not source: continue
        if cell["cell_type"] == "markdown": parts.append(source)
        elif cell["cell_type"] == "code" and not source.startswith("#|"): parts.append(f"```python\n{source}\n```")
    header = "<!-- Generated from nbs/index.ipynb by tests/make_readme.py: edit the notebook, not this file. -->\n\n"
    return header + "\n\n".join(parts) + "\n"

if __name__ == "__main__":
    readme, text = ROOT/"README.md", render()
    if "--check" in sys.argv:
        if readme.read_text(encoding="utf-8") != text: sys.exit("README.md differs from nbs/index.ipynb: run python tests/make_readme.py")
    else: readme.write_text(text, encoding="utf-8")
