"""The documentation site works in a browser, not only in ``mkdocs build --strict``.

Runs ``tools/check_site.py``: it builds the site, serves it on 127.0.0.1 and
opens every page in headless Chromium (stylesheets and scripts load, the theme
is applied, search lists results, Mermaid diagrams are drawn, images load,
links resolve). Skipped on a machine without Chromium, chromedriver, Selenium
or MkDocs (``apt-get install chromium chromium-driver``, ``pip install
".[docs]"``), and where the tests run without the project's tools (an
installed wheel's test run).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "check_site.py"


def _missing_requirements() -> list[str]:
    if not TOOL.is_file() or not (ROOT / "mkdocs.yml").is_file():
        return ["the project's tools/check_site.py and mkdocs.yml"]
    spec = importlib.util.spec_from_file_location("check_site", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look themselves up there
    spec.loader.exec_module(sys.modules[spec.name])
    module = sys.modules[spec.name]
    missing: list[str] = module.missing_requirements()
    return missing


@pytest.mark.timeout(300)
def test_every_page_of_the_site_works_in_a_browser(tmp_path, sched_implementation):
    if str(sched_implementation) == "c":
        pytest.skip("runs once, in the [py] instance: it does not depend on the core")
    missing = _missing_requirements()
    if missing:
        pytest.skip("the site check needs " + ", ".join(missing))
    shots = tmp_path / "screenshots"
    result = subprocess.run(
        [sys.executable, str(TOOL), "--screenshots", str(shots)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    main_pages = {"readme.png", "home.png", "user-guide.png", "api-overview.png"}
    assert main_pages <= {p.name for p in shots.glob("*.png")}, result.stdout
