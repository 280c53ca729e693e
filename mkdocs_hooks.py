"""MkDocs hook (mkdocs.yml `hooks:`): links between the English pages (docs/X.md) and their
translations (docs/zh/X.md) go where their file path says, on the site as on GitHub.

The i18n plugin builds each language on its own, so by itself it cannot follow such a link: in the
English build the Chinese pages are not there, and in the Chinese build `../X.md` becomes the Chinese
page. This hook turns a link that crosses languages into the other site's URL:

- from an English page, `zh/X.md` -> the Chinese page;
- from a Chinese page, `../X.md` -> the English page when docs/zh/X.md exists (a link to the English
  original, e.g. "English version"); while X is not translated, the link is left to the plugin, which
  shows the English text inside the Chinese site."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.utils import get_relative_url

# a relative link to a markdown page, with its anchor: [text](../X.md#anchor)
LINK = re.compile(r"(\]\()(?![a-z]+:)([^)\s#]+\.md)(#[^)\s]*)?(\))")
# MkDocs would read a rewritten link as a file path again (`..` is the docs' index.md, which the Chinese
# build takes for its own): the URL passes through it behind this scheme, removed from the HTML
MARK = "gradtune-i18n:"


def on_page_markdown(markdown, page, config, files):
    languages = [lang.locale for lang in config.plugins["i18n"].config.languages if not lang.default]
    docs = Path(config.docs_dir)
    src = page.file.src_uri
    page_language = src.split("/", 1)[0] if src.split("/", 1)[0] in languages else None

    def site_url(match: re.Match) -> str:
        target = posixpath.normpath(posixpath.join(posixpath.dirname(src), match[2]))
        head, _, rest = target.partition("/")
        target_language = head if head in languages else None
        if target_language == page_language:
            return match[0]
        if target_language is not None:  # English page -> its translation
            url = f"{target_language}/{page_url(rest)}"
        elif page_language is not None and (docs / page_language / target).is_file():  # -> the English original
            url = page_url(target)
        else:  # not translated yet: the plugin shows the English page in this language's site
            return match[0]
        return f"{match[1]}{MARK}{get_relative_url(url or '.', page.url or '.')}{match[3] or ''}{match[4]}"

    return LINK.sub(site_url, markdown)


def on_page_content(html, page, config, files):
    return html.replace(f'href="{MARK}', 'href="')


def page_url(path: str) -> str:
    """The site URL of a page (directory URLs): index.md -> '', training.md -> training/."""
    stem = path.removesuffix(".md")
    return "" if stem == "index" else stem.removesuffix("/index") + "/"
