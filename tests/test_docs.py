"""The docs' Python examples run as they are."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCKS = [
    pytest.param(code, id=f"{page.name}:{i}")
    for page in (DOCS / "gradient-descent.md", DOCS / "from-scratch.md")
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.S))
]


@pytest.mark.parametrize("code", BLOCKS)
def test_doc_example_runs(code):
    exec(compile(code, "<doc>", "exec"), {})


def test_the_gradient_descent_page_has_its_worked_examples():
    assert len(BLOCKS) >= 2


def test_the_from_scratch_page_has_the_bptt_example():
    assert any("from-scratch.md" in str(b.id) for b in BLOCKS)
