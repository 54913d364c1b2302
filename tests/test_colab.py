"""Colab: `colab_setup` keeps Colab's TensorFlow, adds the tf-keras of its minor version and the other requirements,
reads Kaggle keys from Colab secrets and reports the GPU; tested with a stand-in `google.colab` and a pip that only
records. Every notebook's Colab cell is the same, and it, the README's badges and install URLs use settings.ini's
repository."""
import importlib.metadata, json, re, subprocess, sys, types
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from bloodcancer import core
from bloodcancer.core import COLAB_READY_ENV, UserError, colab_setup, runtime_requirements, tf_keras_requirement

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/"tests"))
import make_readme  # noqa: E402

KAGGLE = ("KAGGLE_USERNAME", "KAGGLE_KEY")
ONE_GPU = lambda: {"gpus": 1, "tpu": False}


class SecretNotFoundError(Exception): "What Colab's `userdata.get` raises for a secret that does not exist."


def stand_in_colab(monkeypatch, secrets: dict):
    "Install a stand-in `google.colab` whose `userdata.get` serves `secrets`, as Colab's does."
    def get(name):
        if name not in secrets: raise SecretNotFoundError(name)
        return secrets[name]
    module = types.ModuleType("google.colab")
    module.userdata = types.SimpleNamespace(get=get)
    monkeypatch.setitem(sys.modules, "google.colab", module)
    for name in (*KAGGLE, COLAB_READY_ENV): monkeypatch.delenv(name, raising=False)


def with_tensorflow(monkeypatch, installed: str | None):
    "Make `importlib.metadata.version('tensorflow')` say `installed` (None: not installed)."
    real = importlib.metadata.version
    def version(name):
        if name != "tensorflow": return real(name)
        if installed is None: raise importlib.metadata.PackageNotFoundError(name)
        return installed
    monkeypatch.setattr(importlib.metadata, "version", version)


@pytest.mark.parametrize("minor", range(14, 22))
def test_tf_keras_of_the_same_minor(minor):
    requirement = tf_keras_requirement(f"2.{minor}.1")
    name, specifier = re.fullmatch(r"(tf-keras)(.*)", requirement).groups()
    allowed = SpecifierSet(specifier)
    assert f"2.{minor}.0" in allowed and f"2.{minor}.9" in allowed
    assert f"2.{minor - 1}.9" not in allowed and f"2.{minor + 1}.0" not in allowed


def test_the_installed_pair_is_a_known_one():
    "This machine's TensorFlow and tf-keras, installed by pip's resolver, are a pair `tf_keras_requirement` names."
    tensorflow, tf_keras = (importlib.metadata.version(n) for n in ("tensorflow", "tf-keras"))
    assert tf_keras in SpecifierSet(tf_keras_requirement(tensorflow).removeprefix("tf-keras"))


@pytest.mark.parametrize("version", ["2.13.1", "2.22.0", "3.0.0", "nightly"])
def test_no_matching_tf_keras_is_refused_with_the_fix(version):
    with pytest.raises(UserError, match=rf"No tf-keras release matches TensorFlow {re.escape(version)} .*pip install"):
        tf_keras_requirement(version)


def test_keeps_colabs_tensorflow_installs_the_rest_and_reads_secrets(monkeypatch, capsys):
    stand_in_colab(monkeypatch, {"KAGGLE_USERNAME": "someone", "KAGGLE_KEY": "0123abcd"})
    with_tensorflow(monkeypatch, "2.19.0")
    calls = []
    ready = colab_setup(pip=calls.append, detect=ONE_GPU)
    wanted = runtime_requirements()  # the installed package's own metadata
    others = [r for r in wanted if not re.match(r"(tensorflow|tf[-_]keras)\b", r, re.I)]
    assert len(others) == len(wanted) - 2 and others
    assert calls == [["tf-keras>=2.19,<2.20", *others]]  # one pip call, and TensorFlow itself not in it
    assert {n: core.os.environ.get(n) for n in KAGGLE} == {"KAGGLE_USERNAME": "someone", "KAGGLE_KEY": "0123abcd"}
    assert core.os.environ[COLAB_READY_ENV] == "1"
    assert (ready["tensorflow"], ready["gpus"], ready["kaggle"]) == ("2.19.0", 1, "read from Colab secrets")
    out = capsys.readouterr().out
    assert "TensorFlow 2.19.0: Colab's, kept (bloodcancer is tested with <2.21,>=2.20)" in out
    assert "GPU: 1 GPU(s) visible to TensorFlow" in out and "0123abcd" not in out  # the key is never printed


def test_without_secrets_says_how_and_keeps_set_credentials(monkeypatch, capsys):
    stand_in_colab(monkeypatch, {"KAGGLE_USERNAME": "someone"})
    with_tensorflow(monkeypatch, "2.20.0")
    ready = colab_setup(pip=lambda arguments: None, detect=lambda: {"gpus": 0, "tpu": False})
    assert all(n not in core.os.environ for n in KAGGLE)
    assert "KAGGLE_KEY missing" in ready["kaggle"] and "Colab secrets" in ready["kaggle"]
    out = capsys.readouterr().out
    assert "(bloodcancer is tested" not in out  # 2.20 is the tested range
    assert "GPU: none: CPU only" in out and "Change runtime type" in out
    # credentials set by the user are left as they are
    stand_in_colab(monkeypatch, {"KAGGLE_USERNAME": "other", "KAGGLE_KEY": "other-key"})
    monkeypatch.setenv("KAGGLE_USERNAME", "mine"); monkeypatch.setenv("KAGGLE_KEY", "my-key")
    ready = colab_setup(pip=lambda arguments: None, detect=lambda: {"gpus": 0, "tpu": True})
    assert ready["kaggle"] == "already set in the environment" and core.os.environ["KAGGLE_KEY"] == "my-key"
    assert "GPU: none, but a TPU (train with strategy='tpu')" in capsys.readouterr().out


def test_an_unmatched_tensorflow_is_refused_before_installing(monkeypatch):
    stand_in_colab(monkeypatch, {})
    with_tensorflow(monkeypatch, "2.13.1")
    calls = []
    with pytest.raises(UserError, match="No tf-keras release matches TensorFlow 2.13.1"):
        colab_setup(pip=calls.append, detect=ONE_GPU)
    assert calls == [] and COLAB_READY_ENV not in core.os.environ


def test_without_tensorflow_installs_the_pinned_pair(monkeypatch):
    stand_in_colab(monkeypatch, {})
    with_tensorflow(monkeypatch, None)
    calls = []
    colab_setup(pip=calls.append, requirements=["tensorflow>=2.20,<2.21", "tf-keras>=2.20,<2.21", "pandas>=2.0"],
                detect=ONE_GPU)
    assert calls == [["tensorflow<2.21,>=2.20", "tf-keras<2.21,>=2.20", "pandas>=2.0"]]


def test_outside_colab_it_refuses(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    with pytest.raises(UserError, match="for Google Colab"): colab_setup(pip=lambda a: None, detect=ONE_GPU)


def test_runtime_requirements_leave_out_the_extras():
    wanted = runtime_requirements()
    assert any(r.startswith("tensorflow") for r in wanted) and any(r.startswith("papermill") for r in wanted)
    assert not any("extra" in r or r.startswith(("nbdev", "pytest")) for r in wanted)


# The Colab cell of the notebooks

def colab_cells() -> dict:
    "{notebook name: source of its cell 2} for every notebook that has a Colab cell."
    found = {}
    for path in sorted((ROOT/"nbs").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        sources = ["".join(c["source"]) for c in cells]
        if any("google.colab" in s and "pip" in s for s in sources): found[path.name] = sources[2]
    return found


def test_every_notebook_has_the_same_colab_cell_from_settings():
    cells, cfg = colab_cells(), make_readme.settings()
    assert len(cells) >= 11 and "03_train.ipynb" in cells and "08_pipeline.ipynb" in cells
    for name, source in cells.items():
        assert source == make_readme.colab_cell(cfg), name
        assert source.startswith("#| hide\n")
        assert re.findall(r"git\+https://[^\"']+", source) == [f"git+{cfg['git_url']}"], name


def test_readme_points_at_the_repository_of_settings():
    cfg, readme = make_readme.settings(), (ROOT/"README.md").read_text()
    assert cfg["git_url"] == f"https://github.com/{cfg['user']}/{cfg['repo']}"
    installs = re.findall(r"git\+https://[^\s\"')]+", readme)
    assert installs and set(installs) == {f"git+{cfg['git_url']}"}
    badges = re.findall(r"https://colab\.research\.google\.com/github/([^/]+)/([^/]+)/blob/([^/]+)/nbs/", readme)
    assert len(badges) >= 9 and set(badges) == {(cfg["user"], cfg["repo"], cfg["branch"])}
    for user, repo in re.findall(r"https://github\.com/([\w.-]+)/([\w.-]+)", readme):
        assert (user, repo) == (cfg["user"], cfg["repo"])


def test_changing_settings_changes_every_url():
    cfg = make_readme.settings() | {"user": "someone-else", "git_url": "https://github.com/someone-else/bloodcancer"}
    changed = make_readme.synced_notebooks(cfg)
    assert set(colab_cells()) | {"index.ipynb"} == {p.name for p in changed}
    for path, text in changed.items():
        assert "github.com/someone-else/bloodcancer" in text and "github.com/bloodcancer/bloodcancer" not in text


def run_colab_cell(monkeypatch, in_colab: bool, ready: bool = False):
    "Execute the Colab cell with pip and `colab_setup` recorded (`ready`: after an earlier setup); their calls."
    calls = {"pip": [], "setup": 0}
    if in_colab: stand_in_colab(monkeypatch, {})
    else: monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    if ready: monkeypatch.setenv(COLAB_READY_ENV, "1")
    monkeypatch.setattr(subprocess, "run", lambda arguments, **kw: calls["pip"].append(arguments))
    monkeypatch.setattr(core, "colab_setup", lambda: calls.__setitem__("setup", calls["setup"] + 1))
    exec(make_readme.colab_cell(make_readme.settings()), {})
    return calls


def test_the_colab_cell_installs_without_dependencies_then_sets_up_once(monkeypatch):
    calls = run_colab_cell(monkeypatch, in_colab=True)
    url = f"git+{make_readme.settings()['git_url']}"
    assert calls == {"pip": [[sys.executable, "-m", "pip", "install", "-q", "--no-deps", url]], "setup": 1}
    # colab_setup sets COLAB_READY_ENV: the next notebook's cell (or a pipeline step's) does nothing
    assert run_colab_cell(monkeypatch, in_colab=True, ready=True) == {"pip": [], "setup": 0}


def test_the_colab_cell_does_nothing_elsewhere(monkeypatch):
    assert run_colab_cell(monkeypatch, in_colab=False) == {"pip": [], "setup": 0}
