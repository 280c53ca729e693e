"""Open a `gradtune report` page in a real headless browser (the system's Chromium, driven by
Playwright) at desktop and phone widths, save full-page screenshots, and check what a reader relies
on: the page asks for nothing over the network, every image loads, and nothing is wider than the
screen (a wide table scrolls inside its own box). Run by hand; not part of the test suite.

    apt-get install -y chromium          # Debian; Playwright's own browser download is not needed
    pip install 'gradtune[browser]'      # playwright
    python benchmarks/report_screenshots.py runs/sst2/report/index.html --output /tmp/shots

Exit code 1 if a check fails. Prints one line per width."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    sys.exit("no Chromium found: apt-get install -y chromium (or put chromium on PATH)")


def check(page_path: Path, output: Path) -> bool:
    from playwright.sync_api import sync_playwright

    ok = True
    output.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        for label, (width, height) in WIDTHS.items():
            page = browser.new_page(viewport={"width": width, "height": height},
                                    device_scale_factor=2 if label == "phone" else 1)
            requests: list[str] = []
            page.on("request", lambda r, seen=requests: seen.append(r.url))
            page.goto(page_path.resolve().as_uri())
            page.wait_for_load_state("load")
            external = [u for u in requests if not u.startswith(("file:", "data:"))]
            broken = page.evaluate("[...document.images].filter(i => !i.complete || i.naturalWidth === 0).length")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            wide = page.evaluate("[...document.querySelectorAll('img')].filter(i => i.getBoundingClientRect().right"
                                 " > window.innerWidth + 1).length")
            shot = output / f"report-{label}.png"
            page.screenshot(path=str(shot), full_page=True)
            good = not external and not broken and overflow <= 0 and not wide
            ok &= good
            print(f"{label} {width}px: {'ok' if good else 'FAIL'}  network requests {len(external)}, broken images "
                  f"{broken}, page wider than the screen by {max(overflow, 0)}px, images too wide {wide} -> {shot}")
            page.close()
        browser.close()
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="a report's index.html")
    parser.add_argument("--output", type=Path, default=Path("report-screenshots"), help="folder for the PNGs")
    args = parser.parse_args()
    sys.exit(0 if check(args.page, args.output) else 1)


if __name__ == "__main__":
    main()
