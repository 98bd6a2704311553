"""report.html for a simulation, a compilation and a sweep: the numbers each page shows are its
JSON's, every chart is drawn, and (in headless Chromium, driven by Selenium) the page loads with
no console error and every chart renders with a size.

The browser tests need Debian's `chromium` and `chromium-driver`; `.ci/run` installs them and
sets SPIKEFORGE_BROWSER_TESTS=1, under which a missing browser fails the tests instead of
skipping them."""

import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from spikeforge.cli import main
from spikeforge.pages import fmt

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TINY = str(EXAMPLES / "models" / "tiny_resnet.yaml")
CHARTS = {"simulate": {"mesh", "noc", "layer_energy", "dram", "timeline", "sparsity"},
          "compile": {"mesh", "placement", "noc", "dram"}, "sweep": {"pareto"}}


class _Page(HTMLParser):
    """The data-key cells (key -> (shown text, data-value)) and the charts of a page."""

    def __init__(self):
        super().__init__()
        self.cells, self.charts, self.tips, self._key, self._value = {}, [], 0, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-key" in a:
            self._key, self._value = a["data-key"], json.loads(a["data-value"])
        if tag == "figure":
            self.charts.append(a["data-chart"])
        self.tips += "data-tip" in a

    def handle_data(self, data):
        if self._key is not None:
            self.cells[self._key] = (data, self._value)
            self._key = None


def _at(doc: dict, key: str):
    for part in key.split("."):
        doc = doc[part]
    return doc


def _parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text())
    return p


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """A simulation, a compilation and a small sweep with its report, each with report.html."""
    root = tmp_path_factory.mktemp("pages")
    assert main(["simulate", TINY, "--train", "-B", "2", "-T", "2", "-o", str(root / "sim")]) == 0
    assert main(["compile", TINY, "--train", "-B", "2", "-T", "2", "-o", str(root / "cmp")]) == 0
    spec = root / "spec.yaml"
    spec.write_text("arch: default\nmodels: [mlp]\ntimesteps: 2\nbatch: 1\nparams:\n"
                    "  - {path: clock_mhz, values: [250, 500, 1000]}\n  - {path: dram.pj_per_bit, values: [5, 20]}\n")
    assert main(["sweep", str(spec), "-o", str(root / "sw"), "--workers", "1"]) == 0
    assert main(["report", str(root / "sw")]) == 0
    return {"simulate": (root / "sim", "report.json"), "compile": (root / "cmp", "compile.json"),
            "sweep": (root / "sw", None)}


@pytest.mark.parametrize("kind", ["simulate", "compile"])
def test_a_page_shows_its_json_numbers_and_every_chart(outputs, kind):
    out, name = outputs[kind]
    doc = json.loads((out / name).read_text())
    page = _parse(out / "report.html")
    assert set(page.charts) >= CHARTS[kind] and page.tips > 20
    assert len(page.cells) >= 6
    for key, (shown, value) in page.cells.items():
        assert value == _at(doc, key), key
        unit = {"energy_pj": "pJ", "latency_s": "s", "dram_bytes": "B", "noc_bytes": "B", "bytes": "B",
                "total": "B", "area_mm2": "mm²"}.get(key.split(".")[-1], "")
        if key.startswith("totals.cycles_by_bound"):
            unit = "cycles"
        assert shown == fmt(value, unit), key


def test_the_sweep_page_names_each_design_and_marks_the_front(outputs):
    out, _ = outputs["sweep"]
    text = (out / "report.html").read_text()
    assert _parse(out / "report.html").charts == ["pareto"]
    assert text.count('data-front="1"') >= 1 and text.count("<circle") == 6
    assert "clock_mhz = 250" in text and "dram.pj_per_bit = 20" in text


def test_no_html_writes_no_page(tmp_path):
    assert main(["simulate", "mlp", "-T", "2", "-o", str(tmp_path / "s"), "--no-html"]) == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["report.json"]


# ---- in a real browser -----------------------------------------------------------------------

def _browser():
    required = os.environ.get("SPIKEFORGE_BROWSER_TESTS") == "1"
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if required:
            pytest.fail("chromium and chromedriver are needed (apt-get install chromium chromium-driver)")
        pytest.skip("no chromium/chromedriver here (CI installs them: .ci/run)")
    webdriver = pytest.importorskip("selenium.webdriver") if not required else __import__(
        "selenium.webdriver", fromlist=["webdriver"])
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(options=opts, service=service)


@pytest.fixture(scope="module")
def browser():
    b = _browser()
    yield b
    b.quit()


@pytest.mark.parametrize("kind", ["simulate", "compile", "sweep"])
def test_in_chromium_the_page_loads_cleanly_and_every_chart_renders(outputs, browser, kind):
    out, name = outputs[kind]
    browser.get((out / "report.html").resolve().as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    charts = browser.execute_script("""return [...document.querySelectorAll('figure[data-chart]')].map(f => {
        const s = f.querySelector('svg'), r = s.getBoundingClientRect();
        return [f.dataset.chart, r.width, r.height, s.querySelectorAll('rect,line,circle').length];});""")
    assert {c[0] for c in charts} >= CHARTS[kind]
    for chart, width, height, shapes in charts:
        assert width > 50 and height > 20 and shapes > 0, chart
    if name:  # what the browser shows is the JSON's number
        doc = json.loads((out / name).read_text())
        cells = browser.execute_script("""return [...document.querySelectorAll('[data-key]')].map(
            e => [e.dataset.key, e.textContent, JSON.parse(e.dataset.value)]);""")
        assert cells and all(value == _at(doc, key) for key, _, value in cells)
        assert all(shown.strip() for _, shown, _ in cells)
    # hovering shows the numbers: the first core of the mesh, or the first design of the front
    target = browser.find_element("css selector", "[data-tip]")
    from selenium.webdriver import ActionChains

    ActionChains(browser).move_to_element(target).perform()
    tip = browser.find_element("id", "tip")
    assert tip.is_displayed() and tip.text == target.get_attribute("data-tip")
