"""`pip install` of the wheel and of the sdist (not editable) runs the whole pipeline from any folder.

Each is installed with `--no-deps` into a fresh virtual environment that sees, through a .pth file, only the
distributions of this environment that bloodcancer's runtime requirements pull in (transitively, no extras): the
development extras (nbdev, fastcore, pytest) are invisible to it, so a pipeline notebook that imported one in its
run cells would fail here, and `pip check` proves the requirements satisfied. This saves downloading TensorFlow for
each test. From an empty folder outside the repository `bloodcancer reproduce --profile demo --models AlexNet`
then runs the notebooks installed inside the package and writes Table 1 into that folder.
"""
import email.parser, json, os, re, shutil, subprocess, sys, sysconfig, tarfile, zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ("01_data.ipynb", "02_preprocess.ipynb", "03_train.ipynb", "04_evaluate.ipynb", "05_figures.ipynb")
BUILD_TOOLS = ("setuptools", "wheel")  # what pip needs to build a wheel from the sdist (without build isolation)


def run(*command, **kwargs):
    "Run `command`; its output in the failure message when it fails."
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    "The wheel built from the source tree and the sdist, from a copy of the tree (builds leave files behind)."
    tmp = tmp_path_factory.mktemp("build")
    source = tmp/"source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "data", "outputs", "build", "dist",
                                                                "*.egg-info", "__pycache__", "_docs", "_proc", "tests"))
    run(sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", tmp/"wheel", source)
    run(sys.executable, "-m", "build", "--no-isolation", "--sdist", "--outdir", tmp/"sdist", source)
    (wheel,), (sdist,) = (tmp/"wheel").glob("*.whl"), (tmp/"sdist").glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def wheel_metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode())


def test_the_wheel_ships_the_notebooks_the_licence_and_the_gpu_extra(built):
    with zipfile.ZipFile(built["wheel"]) as archive: names = archive.namelist()
    shipped = {n.split("/")[-1] for n in names if n.startswith("bloodcancer/notebooks/")}
    assert set(PIPELINE) <= shipped and shipped == {p.name for p in (ROOT/"nbs").glob("*.ipynb")}
    assert any(n.endswith(".dist-info/LICENSE") or "/licenses/LICENSE" in n for n in names)
    requires = [Requirement(r) for r in wheel_metadata(built["wheel"]).get_all("Requires-Dist")]
    runtime = {r.name: r for r in requires if r.marker is None}
    gpu = [r for r in requires if r.marker is not None and r.marker.evaluate({"extra": "gpu"})]
    assert [(r.name, r.extras) for r in gpu] == [("tensorflow", {"and-cuda"})]
    assert gpu[0].specifier == runtime["tensorflow"].specifier  # the extra keeps the pinned range
    assert not {"fastcore", "nbdev", "pytest"} & set(runtime)


def test_the_sdist_holds_what_the_build_reads(built):
    with tarfile.open(built["sdist"]) as archive: names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    assert {"settings.ini", "setup.py", "LICENSE", "README.md", "MANIFEST.in"} <= names
    assert {f"nbs/{p.name}" for p in (ROOT/"nbs").glob("*.ipynb")} <= names


def requirement_closure(roots: list) -> list:
    "This environment's distributions that `roots` (requirement strings) pull in, transitively, with their extras."
    import importlib.metadata as metadata
    found, todo = {}, [Requirement(r) for r in roots]
    while todo:
        requirement = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}): continue
        name = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if name in found and extras <= found[name][1]: continue
        distribution = metadata.distribution(name)
        known = found.get(name, (None, set()))[1]
        found[name] = (distribution, known | extras)
        for text in distribution.requires or []:
            needed = Requirement(text)
            if needed.marker is None or any(needed.marker.evaluate({"extra": e}) for e in {"", *extras}):
                todo.append(Requirement(str(needed).split(";")[0]))
    return [distribution for distribution, _ in found.values()]


@pytest.fixture(scope="module")
def runtime_site(built, tmp_path_factory) -> Path:
    "A folder of links to the installed files of what bloodcancer needs at run time (and the tools to build it)."
    requires = [r for r in wheel_metadata(built["wheel"]).get_all("Requires-Dist") if "extra ==" not in r]
    site = tmp_path_factory.mktemp("runtime-site")
    for distribution in requirement_closure(requires + list(BUILD_TOOLS)):
        assert distribution.files, f"{distribution.metadata['Name']} has no RECORD: cannot link its files"
        base = Path(distribution.locate_file(""))
        for top in {f.parts[0] for f in distribution.files if f.parts[0] != ".."}:
            if not (site/top).exists() and (base/top).exists(): (site/top).symlink_to(base/top)
    return site


def fresh_venv(folder: Path, site: Path) -> Path:
    "A new virtual environment seeing `site` through a .pth file; its Python."
    run(sys.executable, "-m", "venv", "--without-pip", folder)
    python = folder/"bin"/"python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    (Path(purelib)/"bloodcancer-test-runtime.pth").write_text(f"{site}\n")
    return python


def clean_environment(venv: Path, home: Path) -> dict:
    "The environment of a user who just made the venv: none of this session's Python or bloodcancer settings."
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "BLOODCANCER_DATA", "BLOODCANCER_OUTPUTS", "IN_TEST")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("KAGGLE")}
    # pip puts nbconvert's templates in <prefix>/share/jupyter, which the runtime site (site-packages only) lacks
    shared = home/"jupyter-path"
    shared.mkdir(exist_ok=True)
    (shared/"nbconvert").symlink_to(Path(sys.prefix)/"share"/"jupyter"/"nbconvert")
    return env | {"PATH": f"{venv/'bin'}{os.pathsep}{env.get('PATH', '')}", "JUPYTER_DATA_DIR": str(home/"jupyter"),
                  "JUPYTER_PATH": str(shared),
                  "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2", "KAGGLE_CONFIG_DIR": str(home/"kaggle")}


# The wheel runs the demo as it is (both splits of AlexNet); the sdist, to save a minute, only its subject split.
@pytest.mark.parametrize("kind, options", [("wheel", ()), ("sdist", ("--split", "subject"))])
def test_installed_package_runs_the_demo_from_an_empty_folder(built, runtime_site, tmp_path, kind, options):
    python = fresh_venv(tmp_path/"venv", runtime_site)
    pip = (sys.executable, "-m", "pip", "--python", python)
    run(*pip, "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation", built[kind])
    run(*pip, "check")  # every requirement of every visible distribution, bloodcancer's included, is satisfied
    here, env = tmp_path/"empty", clean_environment(tmp_path/"venv", tmp_path)
    here.mkdir()
    located = run(python, "-c", "import bloodcancer, bloodcancer.pipeline as p; print(bloodcancer.__file__); "
                  "print(p.notebooks_folder())", cwd=here, env=env).stdout.split()
    package = Path(located[0]).parent
    assert package.is_relative_to(tmp_path/"venv") and Path(located[1]) == package/"notebooks"
    shipped = sorted(p.name for p in (package/"notebooks").iterdir())
    result = subprocess.run([tmp_path/"venv"/"bin"/"bloodcancer", "reproduce", "--profile", "demo", "--models",
                             "AlexNet", "--epochs", "1", *options], cwd=here, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    run_folder = here/"outputs"/"demo"
    tables = list(run_folder.glob("**/table1*.md"))
    assert tables, result.stdout[-3000:]
    table = tables[0].read_text()
    assert "AlexNet" in table and "synthetic" in table.lower()
    assert len(list((here/"data").glob("synthetic-demo-*/"))) == 1  # data and outputs in the current folder
    steps = json.loads((run_folder/"pipeline.json").read_text())["steps"]
    assert steps and all(s["status"] == "done" for s in steps.values()), steps
    for executed in (run_folder/"notebooks").glob("*.ipynb"):  # every step ran a notebook installed with the package
        source = Path(json.loads(executed.read_text())["metadata"]["papermill"]["input_path"])
        assert source.parent == package/"notebooks", executed.name
    assert sorted(p.name for p in (package/"notebooks").iterdir()) == shipped  # nothing written beside them


def test_a_clone_runs_its_own_notebooks(monkeypatch, tmp_path):
    import bloodcancer
    from bloodcancer.core import UserError
    from bloodcancer.pipeline import notebooks_folder
    if Path(bloodcancer.__file__).resolve().parent.parent != ROOT:
        pytest.skip("bloodcancer is not imported from this source tree")
    assert notebooks_folder() == ROOT/"nbs"  # an edited notebook is the one that runs
    # a package without its notebooks (and no source tree beside it) says where it looked and what to do
    (tmp_path/"bloodcancer").mkdir()
    monkeypatch.setattr(bloodcancer, "__file__", str(tmp_path/"bloodcancer"/"__init__.py"))
    with pytest.raises(UserError, match=r"missing \(looked in .*bloodcancer/notebooks and .*nbs\).*pip install"):
        notebooks_folder()
