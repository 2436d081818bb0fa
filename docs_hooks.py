"""MkDocs hooks (`mkdocs.yml`: `hooks`): the site shows the repository
files that its pages link to.

The pages under docs/ link to the benchmark tables, plots, notebooks and
scripts with paths relative to their place in the repository (the links
work when the Markdown is read in the repository itself). A link that leaves
docs/ and names an existing file is rewritten to that file's copy in the
site, at the same path from the site's root; a link to nothing stays as it
is, so that `mkdocs build --strict` fails on it.
"""

import os
import posixpath
import re

from mkdocs.structure.files import File

REPO = os.path.dirname(os.path.abspath(__file__))
DOCS = "docs"
LINK = re.compile(r"\]\((?!https?://|mailto:|#)([^)#\s]+)(#[^)\s]*)?\)")
_linked = set()


def _outside(page_uri, target):
    """The repository path a page's link points to when it leaves docs/, else None."""
    path = posixpath.normpath(posixpath.join(DOCS, posixpath.dirname(page_uri), target))
    if path.startswith(DOCS + "/") or path.startswith("../"):
        return None
    return path


def on_files(files, config):
    """Adds every repository file a page links to outside docs/."""
    _linked.clear()
    docs_dir = config["docs_dir"]
    for page in list(files.documentation_pages()):
        with open(os.path.join(docs_dir, page.src_uri), encoding="utf-8") as f:
            text = f.read()
        for match in LINK.finditer(text):
            path = _outside(page.src_uri, match.group(1))
            if path and os.path.isfile(os.path.join(REPO, path)) and path not in _linked:
                _linked.add(path)
                files.append(File(path, REPO, config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    """Points the links that leave docs/ at the copies `on_files` added."""

    def fix(match):
        path = _outside(page.file.src_uri, match.group(1))
        if path not in _linked:
            return match.group(0)
        here = posixpath.dirname(page.file.src_uri) or "."
        return "](" + posixpath.relpath(path, here) + (match.group(2) or "") + ")"

    return LINK.sub(fix, markdown)
