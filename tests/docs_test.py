"""The documentation: the README is a front page whose links work, every
public module has an API page, every public name a docstring, and the MkDocs
site builds with --strict and shows every public name."""

import importlib
import inspect
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

PACKAGE = os.path.join(REPO, "tf_gradual_prune")
#: Modules that need an optional extra to import.
EXTRAS = {"tuning": "keras_tuner", "audio": "tensorflow_io"}
LINK = re.compile(r"\]\((?!https?://|mailto:|#)([^)#\s]+)(?:#[^)\s]*)?\)")


def public_modules():
    return sorted(name[:-3] for name in os.listdir(PACKAGE)
                  if name.endswith(".py") and not name.startswith("_"))


def import_module(name):
    if name in EXTRAS:
        pytest.importorskip(EXTRAS[name])
    return importlib.import_module(f"tf_gradual_prune.{name}")


def public_names(module):
    """Functions, classes and upper-case constants defined in `module` (not
    imported into it)."""
    source = inspect.getsource(module)
    names = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if inspect.isfunction(value) or inspect.isclass(value):
            if value.__module__ == module.__name__:
                names.append(name)
        elif name.isupper() and re.search(rf"^{name}\s*[:=]", source, re.M):
            names.append(name)
    return sorted(names)


def read(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return f.read()


def markdown_files():
    paths = ["README.md", "CHANGELOG.md"]
    for folder, _, names in os.walk(os.path.join(REPO, "docs")):
        paths += [os.path.relpath(os.path.join(folder, n), REPO) for n in names
                  if n.endswith(".md")]
    return sorted(paths)


def test_readme_is_a_front_page_with_both_commands():
    readme = read("README.md")
    assert len(readme.splitlines()) <= 300
    assert ('pip install -c constraints.txt -e ".[all]" && .venv/bin/tf-gradual-prune demo'
            in readme)
    assert ".venv/bin/python -m pytest -n 2" in readme
    assert "docs/api/index.md" in readme and "docs/accuracy.md" in readme


@pytest.mark.parametrize("path", markdown_files())
def test_relative_links_name_existing_files(path):
    folder = os.path.dirname(os.path.join(REPO, path))
    missing = [target for target in LINK.findall(read(path))
               if not os.path.exists(os.path.normpath(os.path.join(folder, target)))]
    assert not missing, f"{path} links to files that do not exist: {missing}"


@pytest.mark.parametrize("name", public_modules())
def test_every_public_module_has_an_api_page_in_the_nav(name):
    assert f"::: tf_gradual_prune.{name}\n" in read(f"docs/api/{name}.md")
    assert f": api/{name}.md\n" in read("mkdocs.yml")


@pytest.mark.parametrize("name", public_modules())
def test_every_public_function_and_class_has_a_docstring(name):
    module = import_module(name)
    assert inspect.getdoc(module), f"tf_gradual_prune.{name} has no module docstring"
    bare = [n for n in public_names(module) if not n.isupper()
            and not (inspect.getdoc(getattr(module, n)) or "").strip()]
    assert not bare, f"tf_gradual_prune.{name}: no docstring for {bare}"


def test_site_builds_strict_and_shows_every_public_name(tmp_path):
    pytest.importorskip("mkdocstrings_handlers.python",
                        reason="needs the [docs] extra (CI installs it and runs this test)")
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(site)], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    missing = []
    for name in public_modules():
        with open(site / "api" / name / "index.html", encoding="utf-8") as f:
            html = f.read()
        module = import_module(name)
        missing += [f"{name}.{n}" for n in public_names(module)
                    if f'id="tf_gradual_prune.{name}.{n}"' not in html]
    assert not missing, f"the API reference does not show {missing}"
    assert "GradualPruning" in (site / "index.html").read_text(encoding="utf-8")
