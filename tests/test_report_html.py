"""Tests of the HTML leaderboard, in a real browser (headless Chromium) where one is installed.

Set ``VAEBENCH_SCREENSHOT=figures/leaderboard-html.png`` to build the page from the repository's
own ``results/`` instead of the fixture records and save the browser's screenshot there: that
is how the README's screenshot is made.
"""

import html.parser
import io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.leaderboard import write_leaderboard
from benchmark.records import load_records, record_path, write_record
from benchmark.report_html import render_html
from tests.test_leaderboard import fixture_records

REPOSITORY = Path(__file__).resolve().parents[1]
SCREENSHOT = os.environ.get("VAEBENCH_SCREENSHOT")


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


def fixture_results(folder: Path) -> Path:
    """Write the fixture records, and the one image grid they name, under `folder`."""
    for record in fixture_records():
        write_record(
            record, record_path(folder, record.name, record.dataset.name, record.spec_hash)
        )
    image = folder / "images" / "digits" / "vae-0" / "samples.png"
    image.parent.mkdir(parents=True)
    image.write_bytes(_png((200, 30, 30)))
    return folder


class Rows(html.parser.HTMLParser):
    """Collect ``data-config`` of the rows of each table class, and ``<body data-ready>``."""

    def __init__(self) -> None:
        super().__init__()
        self.table = None
        self.rows: dict[str, list[str]] = {}
        self.ready = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.ready = attrs.get("data-ready")
        elif tag == "table":
            self.table = attrs.get("class")
        elif tag == "tr" and "data-config" in attrs:
            self.rows.setdefault(self.table, []).append(attrs["data-config"])


def test_page_is_self_contained_with_a_row_per_configuration_and_hover_provenance(tmp_path):
    """Contract: one page, no external resource, every configuration in its dataset's headline
    table, figures and the image grid embedded, hover text with parameters and provenance."""
    results = fixture_results(tmp_path)
    records = load_records(results)
    page = render_html(records, results_dir=results)
    parser = Rows()
    parser.feed(page)
    assert sorted(parser.rows["headline"]) == sorted({str(r.config_key) for r in records})
    assert "http://" not in page and "https://" not in page and 'src="data:image/png' in page
    assert page.count("<img") >= 4 and 'id="grid-images-digits-vae-0"' in page
    assert 'title="nll/nll (upper_bound, nats): 88.0 ± 0.50' in page
    assert "Parameters: k=1000, split=test, version=1/2. Runs: seed 0: spec iwae0" in page
    assert "≤ 88.0" in page and "83% of examples have PSIS k-hat &gt; 0.7" in page


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `.ci/setup --test` installs it as root")
        pytest.skip("no chromium: `sudo apt-get install chromium` (`.ci/setup --test` does)")
    return found


def _browse(chromium: str, page: Path, *flags: str) -> str:
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    result = subprocess.run(
        [*command, *flags, page.as_uri()], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_chromium_renders_every_configuration_and_a_non_blank_page(tmp_path):
    """Contract (real browser): headless Chromium loads the page and runs its script; the DOM it
    dumps holds a headline row for every configuration; its screenshot is not blank."""
    chromium = _chromium()
    results = REPOSITORY / "results" if SCREENSHOT else fixture_results(tmp_path / "results")
    page = tmp_path / "leaderboard.html"
    records = write_leaderboard(
        results, tmp_path / "leaderboard.md", tmp_path / "leaderboard.csv", html_output=page
    )
    parser = Rows()
    parser.feed(_browse(chromium, page, "--dump-dom"))
    assert parser.ready == "yes"  # the page's script ran to its end
    assert sorted(parser.rows["headline"]) == sorted({str(r.config_key) for r in records})
    shot = Path(SCREENSHOT).resolve() if SCREENSHOT else tmp_path / "shot.png"
    _browse(chromium, page, "--window-size=1400,1000", f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert pixels.shape[:2] == (1000, 1400)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
