"""The docs site builds, and its reference cannot drift from the code: docs/cli.md is what the CLI
generates, `mkdocs build --strict` fails on a broken link, anchor or page, every page is in the nav, and
the Python API page renders everything `gradtune` exports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
# docs/*.md pages deliberately left out of the nav, with the reason (none today)
NOT_IN_NAV: dict[str, str] = {}
# names `gradtune` exports that api.md describes in prose rather than with a `:::` block, and why
IN_PROSE = {"Config": "a pydantic model without a docstring of its own; its keys are docs/config.md"}


class _Loader(yaml.SafeLoader):
    """mkdocs.yml names Python objects (`!!python/object/apply:...`); the nav needs none of them."""


_Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def nav_pages(items: list) -> list[str]:
    pages = []
    for item in items:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_the_cli_reference_is_current():
    from gradtune.commands.reference import cli_reference

    assert (DOCS / "cli.md").read_text() == cli_reference(), \
        "docs/cli.md is stale: regenerate it with `python -m gradtune.commands.reference > docs/cli.md`"


def test_every_page_is_in_the_nav():
    nav = nav_pages(yaml.load((REPO / "mkdocs.yml").read_text(), Loader=_Loader)["nav"])
    pages = {p.name for p in DOCS.glob("*.md")}
    missing = pages - set(nav) - set(NOT_IN_NAV)
    assert not missing, f"add these pages to the nav in mkdocs.yml (or to NOT_IN_NAV with a reason): {sorted(missing)}"
    assert not set(nav) - pages, f"the nav names pages that docs/ does not have: {sorted(set(nav) - pages)}"
    assert len(nav) == len(set(nav)), "a page is in the nav twice"


def test_every_translated_page_has_its_english_page():
    # the language switch pairs docs/zh/X.md with docs/X.md
    orphans = [p.name for p in (DOCS / "zh").glob("*.md") if not (DOCS / p.name).is_file()]
    assert not orphans, f"docs/zh/ pages without an English page of the same name: {orphans}"


def test_the_api_page_covers_what_gradtune_exports():
    import gradtune

    blocks = re.findall(r"^::: ([\w.]+)", (DOCS / "api.md").read_text(), re.M)
    documented = {b.rsplit(".", 1)[1] for b in blocks}
    missing = set(gradtune.__all__) - documented - set(IN_PROSE)
    assert not missing, f"docs/api.md has no `::: module.name` block for {sorted(missing)}"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site_dir = tmp_path_factory.mktemp("site")
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
                           cwd=REPO, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    problems = "\n".join(line for line in build.stderr.splitlines() if not line.startswith("INFO"))
    assert build.returncode == 0, f"mkdocs build --strict failed (missing? pip install -e '.[docs]'):\n{problems}"
    return site_dir


def test_the_site_builds_with_every_page(site):
    nav = nav_pages(yaml.load((REPO / "mkdocs.yml").read_text(), Loader=_Loader)["nav"])
    for page in nav:
        built = site / ("index.html" if page == "index.md" else f"{page.removesuffix('.md')}/index.html")
        assert built.is_file(), f"{page} was not built"
    api = (site / "api" / "index.html").read_text()
    # mkdocstrings rendered the docstrings and signatures, not only the page's own prose
    assert "Train from a config" in api and "Predictor" in api and "GradtuneError" in api
    assert '<a href="zh/">中文版</a>' in (site / "index.html").read_text()  # zh/index.md: the Chinese home


def test_the_chinese_site_links_both_ways(site):
    page = (site / "zh" / "index.html").read_text()
    assert '<html lang="zh"' in page and "梯度下降" in page and "参数高效微调" in page
    assert '<a href="..">English version</a>' in page  # ../index.md: the English home, not this page
    assert re.search(r'href="[^"]*" hreflang="en" class="md-select__link"', page)  # the language switch
    assert 'href="gradient-descent/"' in page  # the tutorials' path, in English until translated
    fallback = (site / "zh" / "gradient-descent" / "index.html").read_text()
    assert "Gradient descent in your hands" in fallback and "梯度下降" in fallback  # English page, Chinese nav
