"""README.md follows from nbs/index.ipynb, and it names the test command that CI runs."""
import subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_is_rendered_from_index_notebook():
    result = subprocess.run([sys.executable, str(ROOT/"tests"/"make_readme.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_test_command_is_what_ci_runs():
    readme, ci = (ROOT/"README.md").read_text(), (ROOT/".ci"/"run").read_text()
    assert "bash tests/run.sh" in readme and "tests/run.sh" in ci
