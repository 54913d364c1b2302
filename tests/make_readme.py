"""Render README.md from nbs/index.ipynb without Quarto, and keep the repository's URL in one place: settings.ini.

Markdown cells are copied as they are; code cells without nbdev directives become fenced Python blocks.
The repository (settings.ini: `user`, `repo`, `branch`, `git_url`) is written into the notebooks from settings.ini:
every notebook's Colab cell (cell 2, `#| hide`: it installs bloodcancer on Colab) is `colab_cell()`, and the Colab
badges and `git+` install URLs of nbs/index.ipynb point at it. Change settings.ini and run this script.
`python tests/make_readme.py` updates the notebooks and writes README.md; `--check` changes nothing and exits 1
when a notebook or README.md differs from what settings.ini and nbs/index.ipynb make.
"""
import json, re, sys
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLAB_MARK = 'if "google.colab" in sys.modules'  # with `#| hide` first, how a notebook's Colab cell is recognised


def settings(path: Path = ROOT/"settings.ini") -> dict:
    "settings.ini's values, interpolated (git_url is built from user and repo)."
    config = ConfigParser(delimiters=["="])
    config.read(path, encoding="utf-8")
    return dict(config["DEFAULT"])


def colab_cell(cfg: dict) -> str:
    "The source of every notebook's Colab cell."
    return f'''#| hide
# Colab only (does nothing elsewhere): install bloodcancer, keeping Colab's TensorFlow and adding the matching
# tf-keras; Kaggle credentials come from Colab secrets (KAGGLE_USERNAME, KAGGLE_KEY). See `colab_setup` in 00_core.
import os, subprocess, sys
{COLAB_MARK} and not os.environ.get("BLOODCANCER_COLAB_READY"):
    repository = "git+{cfg['git_url']}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", repository], check=True)
    from bloodcancer.core import colab_setup
    colab_setup()'''


def with_repository(text: str, cfg: dict) -> str:
    "`text` with its Colab badge links and `git+` install URLs pointing at settings.ini's repository."
    text = re.sub(r"https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/[\w.-]+/",
                  f"https://colab.research.google.com/github/{cfg['user']}/{cfg['repo']}/blob/{cfg['branch']}/", text)
    return re.sub(r"git\+https://github\.com/[\w.-]+/[\w.-]+?(?=[\"'\s)@#]|\.git|$)", f"git+{cfg['git_url']}", text)


def source_lines(text: str) -> list:
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


TABLE_HEAD = "| notebook | module | what it does | |"  # the notebook table of nbs/index.ipynb, made by notebook_table


def notebook_table(cfg: dict) -> str:
    "The README's notebook table, one row per numbered notebook: its module and subtitle, read from the notebook."
    rows = [TABLE_HEAD, "|---|---|---|---|"]
    for path in sorted((ROOT/"nbs").glob("[0-9]*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        sources = ["".join(c["source"]) for c in cells]
        module = next(re.search(r"#\| default_exp (\S+)", s).group(1) for s in sources if "#| default_exp" in s)
        subtitle = next(line[2:] for line in sources[0].splitlines() if line.startswith("> "))
        colab = any(COLAB_MARK in s for s in sources[:3])
        repository = f"{cfg['user']}/{cfg['repo']}/blob/{cfg['branch']}"
        link = f"https://colab.research.google.com/github/{repository}/nbs/{path.name}"
        badge = f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({link})" if colab else ""
        rows.append(f"| [{path.stem}](nbs/{path.name}) | `bloodcancer.{module}` | {subtitle} | {badge} |")
    return "\n".join(rows)


def with_notebook_table(text: str, cfg: dict) -> str:
    "`text` with its notebook table (from `TABLE_HEAD` to the next blank line) made anew from the notebooks."
    if TABLE_HEAD not in text: return text
    before, after = text.split(TABLE_HEAD, 1)
    rest = after.split("\n\n", 1)
    return before + notebook_table(cfg) + ("\n\n" + rest[1] if len(rest) > 1 else "")


def synced_notebooks(cfg: dict) -> dict:
    "{notebook path: its text with settings.ini's repository} for the notebooks that this changes."
    changed = {}
    for path in sorted((ROOT/"nbs").glob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        notebook = json.loads(text)
        for number, cell in enumerate(notebook["cells"]):
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and source.startswith("#| hide") and COLAB_MARK in source:
                if number != 2: sys.exit(f"{path.name}: the Colab cell must be cell 2 (it is cell {number})")
                cell["source"] = source_lines(colab_cell(cfg))
            elif path.name == "index.ipynb":
                cell["source"] = source_lines(with_notebook_table(with_repository(source, cfg), cfg))
        new = json.dumps(notebook, sort_keys=True, indent=1, ensure_ascii=False) + "\n"  # as nbdev writes
        if json.loads(new) != json.loads(text): changed[path] = new
    return changed


def render(notebook: Path = ROOT/"nbs"/"index.ipynb") -> str:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    parts = []
    for cell in cells:
        source = "".join(cell["source"]).strip()
        if not source: continue
        # Images sit in nbs/images/: index.ipynb (rendered from nbs/ by Quarto) links them as images/...
        if cell["cell_type"] == "markdown": parts.append(source.replace("](images/", "](nbs/images/"))
        elif cell["cell_type"] == "code" and not source.startswith("#|"): parts.append(f"```python\n{source}\n```")
    header = "<!-- Generated from nbs/index.ipynb by tests/make_readme.py: edit the notebook, not this file. -->\n\n"
    return header + "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    cfg, readme = settings(), ROOT/"README.md"
    changed = synced_notebooks(cfg)
    if "--check" in sys.argv:
        if changed: sys.exit(f"{', '.join(p.name for p in changed)} differ from settings.ini's repository "
                             f"({cfg['git_url']}): run python tests/make_readme.py")
        if readme.read_text(encoding="utf-8") != render():
            sys.exit("README.md differs from nbs/index.ipynb: run python tests/make_readme.py")
    else:
        for path, text in changed.items(): path.write_text(text, encoding="utf-8")
        readme.write_text(render(), encoding="utf-8")
