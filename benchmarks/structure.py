"""The structure of the code, in figures: sizes, the import graph among the package's modules, run-folder paths and
config.json reads spelled outside `bloodcancer.runs`, the width of `make_dataset`, and how literate the notebooks are.

Nothing is imported or run: the library is read with `ast` (`bloodcancer/*.py` but the generated `_modidx.py`) and
the notebooks with `json` (`nbs/*.ipynb`), so `--root PATH` measures any checkout (an old commit's worktree included).
What is counted, and how:

- lines: the lines of each module (`str.splitlines`), their total, and the largest module.
- import arrows: module A -> module B when A imports B, B one of the package's modules, A != B, whether at module
  level or inside a function: `from .b import x`, `from bloodcancer.b import x`, `from . import b`,
  `from bloodcancer import b`, `import bloodcancer.b`, and a string constant that is exactly `"bloodcancer.b"` or
  `"bloodcancer.b:NAME"` (what `importlib.import_module` and `core.resolve_choices` import). An arrow is a pair of
  modules, however many sites import it. Circles are the strongly connected components of more than one module.
  An upward arrow imports a module whose notebook comes later in the notebook order (a module's notebook is the
  one whose `#| default_exp` names it; the order is that of the sorted file names). Function-level imports are the
  import sites (statements and strings) of package modules inside a `def` or `lambda`, counted per importing module.
- path literals: outside `runs.py`, string constants equal to one of the run folder's file names (`RUN_FILES`), so
  `run/"model.keras"` counts, and f-strings one of whose literal parts is such a name or ends with `/` and one.
- config reads: outside `runs.py`, `<name>.get(...)` calls and `<name>["key"]` subscripts (read, string key) on a
  plain name that contains `config` (`config`, `saved_config`, ...); attribute reads of a `TrainConfig` are not
  reads of the dict. The rule is kept simple: other spellings (`first.get`, `configs[0].get`, a dict passed on
  under another name) are not followed, and another dict named so (a Keras layer's config) counts too.
- make_dataset parameters: the parameters of `bloodcancer.preprocess.make_dataset` (`*args`, `**kwargs` count one
  each, as `inspect.signature` counts them).
- per notebook: its public definitions (functions, classes and assigned names not starting with `_`, at the top of
  its `#| export` cells) and how many are shown: their export cell is followed, before the next export cell that
  defines a public name, by a visible code cell (not `#| hide`, not an export cell) that has outputs.
- definitions per export cell: all top-level definitions of the export cells (private ones too) over the export
  cells, the mean over all notebooks.
- notebooks importing later: the notebooks one of whose code cells imports (as the library's arrows, above) a module
  whose notebook comes later than themselves.

Prints one line per figure, then one line of `key=value` pairs of the main figures, and appends that row (with the
run's date and the measured checkout's commit) to benchmarks/results/structure.csv. `--smoke` measures the same
checkout but writes to `--out` or a temporary folder, never to benchmarks/results/.

Usage: python benchmarks/structure.py [--root PATH] [--out CSV]
       python benchmarks/structure.py --smoke [--out CSV]
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT, append_rows, git_commit, run_stamp  # noqa: E402

PACKAGE = "bloodcancer"
RUN_FILES = ("model.keras", "split.csv", "metrics.json", "predictions.csv", "config.json", "history.csv",
             "leakage.json", "threshold.json", "MODEL_CARD.md", "best.weights.h5", "best-weights.npz")
COLUMNS = ["run", "commit", "lines", "modules", "largest_module", "largest_lines", "arrows", "circles",
           "upward_arrows", "function_imports", "path_literals", "config_reads", "make_dataset_params",
           "public_definitions", "shown", "defs_per_export_cell", "notebooks_importing_later"]
IMPORT_STRING = re.compile(rf"{PACKAGE}\.(\w+)(?::\w+)?")


def modules(root: Path) -> dict[str, str]:
    "The package's modules (`bloodcancer/*.py` but `_modidx.py`) of checkout `root`: {name: source}."
    return {p.stem: p.read_text() for p in sorted((root/PACKAGE).glob("*.py")) if p.name != "_modidx.py"}


def parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def in_function(node: ast.AST, up: dict) -> bool:
    while node in up:
        node = up[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)): return True
    return False


def import_sites(tree: ast.AST, names: set[str]) -> list[tuple[str, bool]]:
    "(module imported, inside a function) for each site in `tree` that imports one of the package's modules `names`."
    up, sites = parents(tree), []
    for node in ast.walk(tree):
        found = []
        if isinstance(node, ast.ImportFrom):
            relative, absolute = node.level == 1, node.level == 0 and node.module is not None
            if relative and node.module or absolute and node.module.startswith(PACKAGE + "."):
                found = [node.module.split(".")[-1] if relative else node.module.split(".")[1]]
            elif relative or absolute and node.module == PACKAGE: found = [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            found = [a.name.split(".")[1] for a in node.names if a.name.startswith(PACKAGE + ".")]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = IMPORT_STRING.fullmatch(node.value)
            found = [match[1]] if match else []
        sites += [(name, in_function(node, up)) for name in found if name in names]
    return sites


def circles(arrows: set[tuple[str, str]]) -> list[list[str]]:
    "The strongly connected components of more than one module (Tarjan), each sorted, in order of their first module."
    graph, index, low, stack, on_stack, found = defaultdict(list), {}, {}, [], set(), []
    for a, b in sorted(arrows): graph[a].append(b)

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node), on_stack.add(node)
        for other in graph[node]:
            if other not in index: visit(other); low[node] = min(low[node], low[other])
            elif other in on_stack: low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop(); on_stack.discard(other); component.append(other)
                if other == node: break
            if len(component) > 1: found.append(sorted(component))

    for node in sorted({m for arrow in arrows for m in arrow}):
        if node not in index: visit(node)
    return sorted(found)


def is_run_file(text: str) -> str | None:
    "The run-folder file `text` names, alone or at the end of a path (`.../model.keras`), or None."
    return next((name for name in RUN_FILES if text == name or text.endswith("/" + name)), None)


def path_literals(tree: ast.AST) -> list[str]:
    "The run-folder file names spelled in `tree`: constants equal to one, and f-strings one of whose parts names one."
    parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in parts:
            if node.value in RUN_FILES: found.append(node.value)
        elif isinstance(node, ast.JoinedStr):
            names = [is_run_file(v.value) for v in node.values if isinstance(v, ast.Constant)]
            found += [name for name in names if name]
    return found


def config_reads(tree: ast.AST) -> int:
    "`<name>.get(...)` calls and `<name>['key']` reads on a name containing `config`."
    def configish(node): return isinstance(node, ast.Name) and "config" in node.id.lower()
    calls = sum(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "get"
                and configish(n.func.value) for n in ast.walk(tree))
    subscripts = sum(isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Load) and configish(n.value)
                     and isinstance(n.slice, ast.Constant) and isinstance(n.slice.value, str) for n in ast.walk(tree))
    return calls + subscripts


def parameters(tree: ast.AST, function: str) -> int | None:
    "The parameters of the top-level function `function` of `tree`, as `inspect.signature` counts them."
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            a = node.args
            return len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)
    return None


def directives(source: str) -> dict[str, str]:
    "The nbdev directives of a cell (`#| name value`), from its leading comment lines."
    found = {}
    for line in source.splitlines():
        if not line.strip(): continue
        match = re.match(r"\s*#\s*\|\s*([\w-]+):?\s*(.*)", line)
        if not match:
            if line.lstrip().startswith("#"): continue
            break
        found[match[1]] = match[2].strip()
    return found


def parse_cell(source: str) -> ast.Module | None:
    "The cell's code, IPython magics and shell lines blanked; None where it is no Python."
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try: return ast.parse(code)
    except SyntaxError: return None


def definitions(tree: ast.Module | None) -> list[str]:
    "The names a cell defines at its top level: functions, classes and assigned names (imports are not definitions)."
    names = []
    for node in tree.body if tree else []:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names += [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
    return [n for n in names if not (n.startswith("__") and n.endswith("__"))]


def notebooks(root: Path) -> list[dict]:
    "Per notebook of `nbs/` (sorted by file name): its name, module, cells (source, directives, outputs, tree)."
    found = []
    for path in sorted((root/"nbs").glob("*.ipynb")):
        cells = []
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code": continue
            source = "".join(cell["source"])
            cells.append(dict(directives=directives(source), outputs=bool(cell.get("outputs")),
                              tree=parse_cell(source)))
        module = next((c["directives"]["default_exp"] for c in cells if "default_exp" in c["directives"]), None)
        found.append(dict(name=path.stem, module=module, cells=cells))
    return found


def literate(cells: list[dict]) -> tuple[int, int, int, int]:
    "(public definitions, shown, export cells, definitions in them) of one notebook's code cells."
    public = shown = exports = defined = 0
    pending = 0  # public definitions of the last export cell that defined some, not yet shown
    for cell in cells:
        if "export" in cell["directives"]:
            names = definitions(cell["tree"])
            exports, defined = exports + 1, defined + len(names)
            mine = sum(not n.startswith("_") for n in names)
            if mine: public, pending = public + mine, mine
        elif "hide" not in cell["directives"] and cell["outputs"] and pending:
            shown, pending = shown + pending, 0
    return public, shown, exports, defined


def measure(root: Path) -> tuple[dict, list[str]]:
    "The main figures of checkout `root` (the CSV row) and the lines to print."
    sources = modules(root)
    trees = {name: ast.parse(source) for name, source in sources.items()}
    lines = {name: len(source.splitlines()) for name, source in sources.items()}
    largest = max(lines, key=lines.get)  # the first in name order of the largest
    books = notebooks(root)
    order = {book["module"]: i for i, book in enumerate(books) if book["module"]}
    notebook_of = {book["module"]: book["name"] for book in books if book["module"]}
    names = set(sources)

    arrows, inside = set(), Counter()
    for name, tree in trees.items():
        for imported, in_def in import_sites(tree, names):
            if imported != name: arrows.add((name, imported))
            if in_def: inside[name] += 1
    upward = sorted((a, b) for a, b in arrows if a in order and b in order and order[b] > order[a])
    loops = circles(arrows)

    outside = {name: tree for name, tree in trees.items() if name != "runs"}
    literals = {name: Counter(path_literals(tree)) for name, tree in outside.items()}
    by_literal = sum(literals.values(), Counter())
    reads = {name: config_reads(tree) for name, tree in outside.items()}
    width = parameters(trees["preprocess"], "make_dataset") if "preprocess" in trees else None

    per_book, later = {}, {}
    for i, book in enumerate(books):
        per_book[book["name"]] = literate(book["cells"])
        imported = {m for c in book["cells"] if c["tree"] for m, _ in import_sites(c["tree"], names)}
        ahead = sorted(m for m in imported if order.get(m, -1) > i)
        if ahead: later[book["name"]] = ahead
    public, shown, exports, defined = (sum(t[k] for t in per_book.values()) for k in range(4))

    def listing(counts: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if v) or "none"

    row = dict(lines=sum(lines.values()), modules=len(lines), largest_module=largest, largest_lines=lines[largest],
               arrows=len(arrows), circles=len(loops), upward_arrows=len(upward), function_imports=sum(inside.values()),
               path_literals=sum(by_literal.values()), config_reads=sum(reads.values()), make_dataset_params=width,
               public_definitions=public, shown=shown, defs_per_export_cell=round(defined / max(exports, 1), 2),
               notebooks_importing_later=len(later))
    targets = defaultdict(list)
    for a, b in sorted(arrows): targets[a].append(b)
    printed = [
        f"library lines: {row['lines']} in {row['modules']} modules ({PACKAGE}/*.py but _modidx.py)",
        f"lines per module: {listing(lines)}",
        f"largest module: {largest} ({lines[largest]} lines)",
        f"import arrows: {len(arrows)}: " + "; ".join(f"{a} -> {', '.join(bs)}" for a, bs in targets.items()),
        f"circles: {len(loops)}" + "".join(f"; {' <-> '.join(loop)}" for loop in loops),
        f"upward arrows (to a later notebook's module): {len(upward)}"
        + "".join(f"; {a} -> {b} ({notebook_of[a]} before {notebook_of[b]})" for a, b in upward),
        f"function-level imports of package modules: {row['function_imports']}: {listing(inside)}",
        f"run-folder path literals outside runs.py: {row['path_literals']}: per literal: {listing(by_literal)}; "
        f"per module: {listing({name: sum(c.values()) for name, c in literals.items()})}",
        f"config dict reads outside runs.py: {row['config_reads']}: {listing(reads)}",
        f"make_dataset parameters: {width}",
        "public definitions shown/defined per notebook: "
        + ", ".join(f"{name} {t[1]}/{t[0]}" for name, t in per_book.items() if t[0]) + f"; all {shown}/{public}",
        f"definitions per export cell: {row['defs_per_export_cell']} ({defined} in {exports} export cells)",
        f"notebooks importing a later notebook's module: {len(later)}"
        + "".join(f"; {name} -> {', '.join(ms)}" for name, ms in later.items()),
    ]
    return row, printed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(ROOT), help="The checkout to measure (default: this repository)")
    parser.add_argument("--out", default=None, help="CSV to append to. Defaults to benchmarks/results/structure.csv")
    parser.add_argument("--smoke", action="store_true", help="check the script: the same figures, the row to --out "
                        "or a temporary folder")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    root = Path(args.root).expanduser().resolve()
    if not (root/PACKAGE).is_dir(): sys.exit(f"{root} is no checkout of {PACKAGE}: it has no {PACKAGE}/ folder")
    row, printed = measure(root)
    row = dict(run=run_stamp(), commit=git_commit(root), **row)
    for line in printed: print(line)
    print(" ".join(f"{key}={row[key]}" for key in COLUMNS[2:]))
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="structure-smoke-"))/"structure.csv"
                                           if args.smoke else RESULTS/"structure.csv")
    print(f"row appended to {append_rows(out, [row], COLUMNS)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
