"""The three kinds of report.html, and a screenshot of each in headless Chromium: a resnet18
training step simulated on the default chip, the same model compiled, and the mlp sweep of
examples/sweep_mlp.yaml.

    .venv/bin/python examples/report_pages.py -o out/pages --shots docs   # about 2 minutes on 2 cores

Needs Debian's `chromium` and `chromium-driver` for the screenshots (`.ci/run` installs them).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from spikeforge.cli import main as cli

SWEEP = str(Path(__file__).parent / "sweep_mlp.yaml")


def screenshot(page: Path, png: Path, width: int = 1280) -> None:
    """A full-page screenshot of `page` in headless Chromium."""
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={width},800"):
        opts.add_argument(arg)
    b = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")))
    try:
        b.get(page.resolve().as_uri())
        height = b.execute_script("return document.documentElement.scrollHeight")
        b.set_window_size(width, min(height + 200, 6000))  # the window's frame takes some of it
        png.parent.mkdir(parents=True, exist_ok=True)
        if not b.save_screenshot(str(png)):
            raise OSError(f"could not write {png}")
    finally:
        b.quit()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", default="out/pages")
    ap.add_argument("--shots", default=None, help="write report_simulate.png, report_compile.png and "
                                                  "report_sweep.png here")
    a = ap.parse_args(argv)
    out = Path(a.out)
    runs = {"simulate": ["simulate", "resnet18", "--train", "-B", "2", "-o", str(out / "simulate")],
            "compile": ["compile", "resnet18", "--train", "-B", "2", "-o", str(out / "compile")],
            "sweep": ["sweep", SWEEP, "-o", str(out / "sweep")]}
    for kind, argv_ in runs.items():
        if cli(argv_) != 0:
            return 1
    if cli(["report", str(out / "sweep")]) != 0:
        return 1
    for kind in runs:
        print(f"{kind}: {out / kind / 'report.html'}")
        if a.shots:
            png = Path(a.shots) / f"report_{kind}.png"
            screenshot(out / kind / "report.html", png)
            print(f"  wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
