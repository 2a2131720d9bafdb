"""Browser suite wiring (issue 20): the ``browser`` marker, a real 3-node cluster with auth
on, and Debian's Chromium driven by Playwright.

The suite needs a browser (``apt-get install chromium``) and Playwright's Python package
(never ``playwright install``: it is pointed at /usr/bin/chromium), so it runs only when
asked for, like the chaos suite: ``pytest -m browser`` or ``pytest tests/browser``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dfsring.cli.launcher import LocalCluster

_HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("DFSRING_CHROMIUM", "/usr/bin/chromium")


def _asked_for(config: pytest.Config) -> bool:
    markexpr = config.getoption("markexpr", "") or ""
    return "browser" in markexpr or any("browser" in str(arg) for arg in config.args)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _asked_for(config):
        return
    skip = pytest.mark.skip(reason="browser suite: run it with -m browser (or pytest "
                                   "tests/browser)")
    for item in items:
        if _HERE in item.path.resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(3, tmp_path_factory.mktemp("browser"))
    try:
        cluster.start(60)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM,
                                      args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()
