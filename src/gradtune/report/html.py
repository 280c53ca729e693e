"""The report page: sections made of plain blocks (text, facts, tables, images, code), written as
one self-contained HTML file (CSS inline, every image a base64 data URI, no script, no external
URL) with the PNGs beside it. Phones get the same page: one column, images at most the screen's
width, wide tables scroll sideways inside their box."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradtune.folders import atomic_dir


@dataclass
class Text:
    text: str
    note: bool = False  # a remark set apart (missing data, a caveat)


@dataclass
class Facts:
    """Label -> value cards (the run at a glance)."""

    items: list[tuple[str, Any]]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Any]]  # numbers are formatted and right-aligned; None shows as "-"
    caption: str = ""
    wide: tuple[int, ...] = ()  # columns of long text, given room to wrap


@dataclass
class Image:
    name: str  # the PNG's file name beside index.html
    png: bytes
    alt: str


@dataclass
class Code:
    text: str
    folded: str = ""  # if set: shown folded, under this line (a click opens it; no script needed)


Block = Text | Facts | Table | Image | Code


@dataclass
class Section:
    id: str  # the anchor: index.html#id
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Page:
    title: str
    subtitle: str
    sections: list[Section]


CSS = """
:root { --ink: #1d2330; --muted: #5d6677; --line: #dde2ea; --tint: #f4f6fa; --accent: #2f5fb3; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: #fff; }
main { max-width: 1100px; margin: 0 auto; padding: 16px; }
header h1 { font-size: 1.6rem; margin: 8px 0 2px; overflow-wrap: anywhere; }
header p { margin: 0 0 12px; color: var(--muted); overflow-wrap: anywhere; }
nav { display: flex; flex-wrap: wrap; gap: 6px; margin: 12px 0 4px; }
nav a { padding: 3px 10px; border: 1px solid var(--line); border-radius: 14px; color: var(--accent);
        text-decoration: none; font-size: 0.9rem; background: var(--tint); }
section { border-top: 1px solid var(--line); margin-top: 22px; padding-top: 6px; }
h2 { font-size: 1.25rem; margin: 10px 0; }
p { margin: 8px 0; max-width: 75ch; }
p.note { background: #fff6e0; border-left: 4px solid #e0a800; padding: 8px 12px; max-width: none; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); gap: 8px; margin: 10px 0; }
.fact { background: var(--tint); border: 1px solid var(--line); border-radius: 8px; padding: 8px 10px; }
.fact span { display: block; color: var(--muted); font-size: 0.8rem; }
.fact b { font-weight: 600; overflow-wrap: anywhere; }
img { display: block; max-width: 100%; height: auto; margin: 10px 0; border: 1px solid var(--line);
      border-radius: 6px; }
.scroll { overflow-x: auto; margin: 10px 0; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; font-size: 0.9rem; min-width: 100%; }
caption { text-align: left; padding: 6px 10px; color: var(--muted); caption-side: top; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top;
         white-space: nowrap; }
th { background: var(--tint); font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
td.key { color: var(--muted); }
details { margin: 10px 0; }
summary { cursor: pointer; color: var(--accent); }
td.wide { white-space: normal; min-width: 14em; max-width: 38em; overflow-wrap: anywhere; }
tr:last-child td { border-bottom: none; }
pre { background: var(--tint); border: 1px solid var(--line); border-radius: 6px; padding: 10px; overflow-x: auto;
      font-size: 0.85rem; }
footer { color: var(--muted); font-size: 0.85rem; margin: 28px 0 12px; }
@media (max-width: 600px) { main { padding: 10px; } header h1 { font-size: 1.3rem; } body { font-size: 14px; } }
"""


def cell(value: Any) -> tuple[str, bool]:
    """A table cell as HTML, and whether it is a number."""
    if value is None:
        return "-", False
    if isinstance(value, bool):
        return ("yes" if value else "no"), False
    if isinstance(value, int):
        return f"{value:,}", True
    if isinstance(value, float):
        return number(value), True
    return html.escape(str(value)), False


def number(value: float) -> str:
    """4 significant digits; plain notation where that stays short."""
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
        return f"{value:.3e}"
    return f"{value:.4g}"


def _table(table: Table) -> str:
    """Columns of numbers align right, header included; a table without headers is label: value rows."""
    columns = range(max((len(r) for r in table.rows), default=0))
    is_number = lambda v: v is None or isinstance(v, (int, float)) and not isinstance(v, bool)
    numeric = {i for i in columns if i not in table.wide and all(is_number(r[i]) for r in table.rows if i < len(r))}
    body = []
    for row in table.rows:
        cells = []
        for i, value in enumerate(row):
            cls = "wide" if i in table.wide else "num" if i in numeric else "key" if i == 0 and not any(
                table.headers) else ""
            cells.append(f'<td class="{cls}">{cell(value)[0]}</td>' if cls else f"<td>{cell(value)[0]}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    head = "".join(f'<th class="num">{html.escape(h)}</th>' if i in numeric else f"<th>{html.escape(h)}</th>"
                   for i, h in enumerate(table.headers))
    head = f"<thead><tr>{head}</tr></thead>" if any(table.headers) else ""
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f'<div class="scroll"><table>{caption}{head}<tbody>{"".join(body)}</tbody></table></div>'


def _block(block: Block) -> str:
    if isinstance(block, Text):
        return f'<p class="{"note" if block.note else "text"}">{html.escape(block.text)}</p>'
    if isinstance(block, Facts):
        cards = "".join(f'<div class="fact"><span>{html.escape(label)}</span><b>{cell(value)[0]}</b></div>'
                        for label, value in block.items)
        return f'<div class="facts">{cards}</div>'
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Image):
        data = base64.b64encode(block.png).decode("ascii")
        return f'<img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}">'
    if isinstance(block, Code):
        code = f"<pre>{html.escape(block.text)}</pre>"
        return f"<details><summary>{html.escape(block.folded)}</summary>{code}</details>" if block.folded else code
    raise TypeError(f"not a report block: {block!r}")


def render(page: Page, footer: str = "") -> str:
    """The page as one HTML document."""
    nav = "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in page.sections)
    sections = "".join(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>{"".join(map(_block, s.blocks))}'
                       "</section>" for s in page.sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(page.title)}</title><style>{CSS}</style></head><body><main>"
            f"<header><h1>{html.escape(page.title)}</h1><p>{html.escape(page.subtitle)}</p><nav>{nav}</nav></header>"
            f"{sections}<footer>{html.escape(footer)}</footer></main></body></html>\n")


def images(page: Page) -> list[Image]:
    return [b for s in page.sections for b in s.blocks if isinstance(b, Image)]


def write(folder: Path, page: Page, footer: str = "") -> Path:
    """FOLDER/index.html and each image as FOLDER/<name>.png, replaced as a whole (a crash leaves the
    old report or the new one, never half of one). Returns the path of index.html."""

    def fill(tmp: Path) -> None:
        (tmp / "index.html").write_text(render(page, footer), encoding="utf-8")
        for image in images(page):
            (tmp / image.name).write_bytes(image.png)

    atomic_dir(Path(folder), fill)
    return Path(folder) / "index.html"
