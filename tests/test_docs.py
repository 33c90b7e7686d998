"""The documentation says what the code does: the output layout is paths.py's, the README fits a screen or so and
links only to files that exist."""

import re
from pathlib import Path

from bert_tickets import paths

ROOT = Path(__file__).parents[1]


def test_the_usage_guide_shows_the_run_folder_as_paths_py_defines_it():
    layout = "\n".join("  " + line[4:] for line in paths.__doc__.splitlines() if line.startswith("    "))
    assert layout in (ROOT / "docs" / "usage.md").read_text()


def test_the_readme_is_one_screen_or_so_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target
    for doc in ["docs/usage.md", "docs/reference.md", "docs/release.md", "docs/scaling.md", "CONTRIBUTING.md"]:
        assert doc in readme


def test_no_doc_speaks_of_the_machines_we_develop_on():
    for doc in ["README.md", "CONTRIBUTING.md", *map(str, (ROOT / "docs").glob("*.md"))]:
        text = (ROOT / doc).read_text()
        for phrase in ("lent GPU", "this project's EPYC", "here that is a local", "../shared/gpu", "carry `.carry`"):
            assert phrase not in text, (doc, phrase)


def test_every_module_has_its_line_in_the_layout():
    """(methods/ and tasks/ are one class per file, listed by their registries.)"""
    layout = (ROOT / "CONTRIBUTING.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    package = ROOT / "bert_tickets"
    for path in package.rglob("*.py"):
        relative = path.relative_to(package)
        if path.name == "__init__.py" or relative.parts[0] in ("methods", "tasks", "configs", "evaluate_modules"):
            continue
        named = [f"`bert_tickets/{relative}`", f"`{relative}`", f"`{path.name}`"]
        assert any(name in layout for name in named), relative
