"""README.md follows from nbs/index.ipynb, and its two commands are the ones CI and the demo use."""
import re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_is_rendered_from_index_notebook():
    result = subprocess.run([sys.executable, str(ROOT/"tests"/"make_readme.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_has_exactly_the_two_commands():
    readme = (ROOT/"README.md").read_text()
    two = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", two, re.S)
    install_and_reproduce = ('python3 -m venv .venv && .venv/bin/pip install -e ".[dev]"'
                             ' && .venv/bin/bloodcancer reproduce --profile auto')
    assert commands == [install_and_reproduce, "bash tests/run.sh"]
    assert "bash tests/run.sh" in (ROOT/".ci"/"run").read_text()
    assert "bash tests/run.sh" in (ROOT/".github"/"workflows"/"test.yaml").read_text()


def test_readme_states_the_intended_use():
    from bloodcancer.runs import INTENDED_USE  # the words of every report and model card
    readme = " ".join((ROOT/"README.md").read_text().split())
    assert "## Intended use " + INTENDED_USE in readme


def test_readme_subject_cv_table_quotes_the_benchmark_results():
    "Each row of the README's subject cross-validation table is a row of benchmarks/results/ (rerun, then copy)."
    import pandas as pd
    readme = (ROOT/"README.md").read_text()
    results = ROOT/"benchmarks"/"results"
    for name in ("subject_cv-cpu-2cores.csv", "subject_cv-seed7-cpu-2cores.csv", "subject_cv-seed11-cpu-2cores.csv"):
        assert f"benchmarks/results/{name}" in readme
        for row in pd.read_csv(results/name).to_dict("records"):
            cell = lambda k: f"{row[k]:.3f} [{row[k + '_low']:.3f}, {row[k + '_high']:.3f}]"
            line = (f"| {row['recipe']} | {row['seed']} | {cell('weighted_f1')} | {cell('balanced_accuracy')} | "
                    f"{cell('roc_auc')} | {row['subjects_right']} of {row['n_subjects']} |")
            assert line in readme, f"README.md lacks the row of {name}: {line}"


def test_readme_lists_every_notebook_with_its_module():
    "The notebook table is made from the notebooks (tests/make_readme.py): one row each, with the module it exports."
    readme = (ROOT/"README.md").read_text()
    for path in sorted((ROOT/"nbs").glob("[0-9]*.ipynb")):
        source = path.read_text()
        module = re.search(r"#\| default_exp (\w+)", source).group(1)
        assert f"| [{path.stem}](nbs/{path.name}) | `bloodcancer.{module}` |" in readme, path.name
