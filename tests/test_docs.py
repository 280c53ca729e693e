"""The docs' Python examples run as they are, and none of them quietly disappears: each page
keeps the number of runnable examples it has (add to the count when you add one)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
# page -> how many ```python blocks it holds; every one of them runs in this test
RUNNABLE = {"gradient-descent.md": 5, "from-scratch.md": 1}


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.S)


@pytest.mark.parametrize("page", RUNNABLE)
def test_each_page_keeps_its_examples(page):
    assert len(python_blocks(page)) == RUNNABLE[page], f"{page}: update RUNNABLE if an example was added or removed"


@pytest.mark.parametrize("code", [pytest.param(code, id=f"{page}:{i}") for page in RUNNABLE
                                  for i, code in enumerate(python_blocks(page))])
def test_doc_example_runs(code):
    exec(compile(code, "<doc>", "exec"), {})
