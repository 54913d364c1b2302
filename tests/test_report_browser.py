"""The report page in a real browser: headless Chromium opens `index.html` of a report on the tiny synthetic runs; every
image loads, nothing is wider than a 1280-pixel window, the page says the cells are synthetic, Table 1 shows our
numbers with their intervals, the notebook links open; a screenshot of the whole page is kept in the report folder.

Chromium is driven from its command line (no browser download, no Python driver): `--dump-dom` of a copy of the page
with a small checker script that writes its verdict into the page, then `--screenshot`. The flags keep a machine
without network from waiting on connections. Skipped, with the reason, where no Chromium is installed.
"""
import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from bloodcancer.runs import INTENDED_USE

WIDTH = 1280  # the window the page must fit
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--disable-default-apps", "--mute-audio")

# Runs at the page's load event and writes what it measured into <pre id="verdict">, which --dump-dom prints.
CHECKER = """<script>
window.addEventListener('load', () => {
  const root = document.documentElement, images = [...document.images];
  const outside = [...document.querySelectorAll('body *')].filter(e => !e.closest('.scroll'))
    .filter(e => e.getBoundingClientRect().right > root.clientWidth + 0.5);
  const caption = [...document.querySelectorAll('figure.table figcaption')]
    .find(c => c.textContent.startsWith('Table 1 reproduced'));
  const rows = caption ? [...caption.parentElement.querySelectorAll('tbody tr')]
    .map(r => [...r.cells].map(c => c.textContent)) : [];
  const verdict = {inner_width: window.innerWidth, client_width: root.clientWidth, scroll_width: root.scrollWidth,
    scroll_height: root.scrollHeight, images: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    narrowest_image: Math.min(...images.map(i => i.getBoundingClientRect().width)),
    outside: outside.slice(0, 10).map(e => e.tagName + ' ' + e.className),
    banner: (document.querySelector('.banner') || {}).textContent || '',
    intended_use: (document.querySelector('.intended-use') || {}).textContent || '',
    table1_caption: caption ? caption.textContent : '', table1_rows: rows,
    headings: [...document.querySelectorAll('h2, h3')].map(h => h.textContent),
    links: [...document.querySelectorAll('a[href^="notebooks/"]')].map(a => a.getAttribute('href'))};
  const out = document.createElement('pre');
  out.id = 'verdict';
  out.textContent = JSON.stringify(verdict);
  document.body.appendChild(out);
});
</script>"""


def chromium_binary() -> str:
    for candidate in ("chromium", "/usr/bin/chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(candidate)
        if found: return found
    pytest.skip("no Chromium binary found (Debian: `apt-get install -y chromium`; .ci/run installs it when it can)")


def run_chromium(binary: str, *arguments: str, timeout: int = 180) -> str:
    "Run headless Chromium with a fresh profile; its standard output."
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments],
                              capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


def verdict_of(binary: str, page: Path, height: int = 900) -> dict:
    "Load a copy of `page` with the checker appended (beside it, so relative links hold) and read its verdict."
    checked = page.with_name(f".checked-{page.name}")
    checked.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECKER + "\n</body>"), encoding="utf-8")
    try:
        dom = run_chromium(binary, f"--window-size={WIDTH},{height}", "--virtual-time-budget=20000", "--dump-dom",
                           checked.as_uri())
    finally:
        checked.unlink()
    found = re.search(r'<pre id="verdict">(.*?)</pre>', dom, re.S)
    assert found, f"the checker wrote no verdict; the page as Chromium saw it ends with: {dom[-1500:]}"
    return json.loads(html.unescape(found[1]))


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    "A report of a copy of the tiny outputs, with a Grad-CAM grid in one run and a constructed executed notebook."
    import nbformat
    from bloodcancer.demo import tiny_outputs
    from bloodcancer.explain import save_gradcam_figure
    from bloodcancer.figures import write_report
    outputs = tmp_path_factory.mktemp("report") / "outputs"
    shutil.copytree(tiny_outputs(), outputs, ignore=shutil.ignore_patterns("logs", "checkpoints", ".lock"))
    save_gradcam_figure(outputs / "paper" / "AlexNet")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(  # constructed, to check the link and the page
        "print('constructed notebook')", outputs=[nbformat.v4.new_output("stream", text="constructed notebook\n")])])
    (outputs / "notebooks").mkdir()
    nbformat.write(notebook, outputs / "notebooks" / "03_train-paper-AlexNet.ipynb")
    return write_report(outputs)


def test_report_page_in_headless_chromium(report):
    binary = chromium_binary()
    page = report["index"]
    assert page == report["report"] / "index.html" and page.is_file()
    verdict = verdict_of(binary, page)

    # every image is embedded and decoded: Figs 12-15, the leakage figure, 6 figures per run, the Grad-CAM grid
    assert verdict["broken"] == [], verdict["broken"]
    assert verdict["images"] == 5 + 4 * 6 + 1
    assert verdict["narrowest_image"] > 200, "an image is drawn too small to read"
    # nothing is wider than the window: tables scroll inside their own box
    assert verdict["inner_width"] == WIDTH
    assert verdict["scroll_width"] <= verdict["client_width"], verdict
    assert verdict["outside"] == [], verdict["outside"]
    # what a reader must see first
    assert verdict["banner"].startswith("SYNTHETIC cells, not C-NMC")
    assert INTENDED_USE in verdict["intended_use"]
    # Table 1: ours with the 95% interval beside the paper's, and how the runs were trained
    assert "[95% bootstrap interval" in verdict["table1_caption"]
    settings = "trained at 32 px, 3 epochs, batch 8, learning rate 0.001, random initialisation"
    assert settings in verdict["table1_caption"]
    rows = {row[0]: row for row in verdict["table1_rows"]}
    assert rows["AlexNet"][1] == "AlexNet"
    assert re.fullmatch(r"\d+\.\d \[\d+\.\d, \d+\.\d\] \(87\.9\)", rows["AlexNet"][2]), rows["AlexNet"]
    assert rows["EfficientNet"][1] == "EfficientNetB0" and rows["EfficientNet"][2].endswith("(93)")
    assert rows["ResNetRS50"][1:] == ["not run", "– (97)", "– (99)", "– (98)"]
    for heading in ("Table 1", "Figures 12 to 15", "Leakage study", "Every run", "Executed notebooks",
                    "AlexNet, paper split (SYNTHETIC cells (not C-NMC))"):
        assert heading in verdict["headings"], heading
    # the notebook link opens a rendered page that needs no network either
    assert verdict["links"] == ["notebooks/03_train-paper-alexnet.html"]
    rendered = run_chromium(binary, f"--window-size={WIDTH},900", "--virtual-time-budget=5000", "--dump-dom",
                            (page.parent / verdict["links"][0]).as_uri())
    assert "constructed notebook" in rendered

    # the screenshot of the whole page, kept beside it
    screenshot = page.parent / "screenshot.png"
    height = min(int(verdict["scroll_height"]), 30000)
    run_chromium(binary, f"--window-size={WIDTH},{height}", "--hide-scrollbars", f"--screenshot={screenshot}",
                 page.as_uri())
    assert png_size(screenshot) == (WIDTH, height)
    assert screenshot.stat().st_size > 100_000, "the screenshot is nearly empty"
    print(f"screenshot: {screenshot}; page {page.stat().st_size / 1e6:.1f} MB, {height} px tall")
