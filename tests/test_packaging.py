"""environment.yml, setup.py and the README's install instructions agree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _setup_requirements() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(node for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords
                if k.arg in ("install_requires", "extras_require")}
    extras = [r for name, reqs in keywords["extras_require"].items() if name != "bench" for r in reqs]
    return keywords["install_requires"] + extras


def _name(requirement: str) -> str:
    return re.split(r"[<>=!\[ ]", requirement, maxsplit=1)[0].lower()


def test_psycopg2_comes_from_pip_only():
    """conda's psycopg2 and pip's psycopg2-binary both write the `psycopg2` module."""
    conda = [_name(d) for d in _environment()["dependencies"] if isinstance(d, str)]
    assert not [d for d in conda if d.startswith("psycopg2")], conda
    assert "psycopg2-binary" in [_name(r) for r in _setup_requirements()]
    pip = next(d["pip"] for d in _environment()["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip  # installs setup.py's requirements, psycopg2-binary among them


def test_aicssegmentation_is_no_dependency():
    """It is only the segmentation benchmark's baseline, installed by `make bench`."""
    assert "aicssegmentation" not in (ROOT / "environment.yml").read_text()
    assert "aicssegmentation" not in [_name(r) for r in _setup_requirements()]
    assert "aicssegmentation" not in (ROOT / "setup.py").read_text()


def test_readme_conda_instructions_create_and_activate_the_environment():
    readme = (ROOT / "README.md").read_text()
    assert "conda env create -f environment.yml" in readme
    assert f"conda activate {_environment()['name']}" in readme


def _setup_url() -> str | None:
    """The repository address setup.py states (``url=``), if any."""
    found = re.search(r"""\burl\s*=\s*["']([^"']+)["']""", (ROOT / "setup.py").read_text())
    return found.group(1) if found else None


def test_binder_links_point_at_the_repository_setup_py_names_or_there_is_none():
    """No badge to a made-up address: one derived from setup.py's url=, or none and the way to launch."""
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"https://mybinder\.org/v2/[^\s)\]]+", readme)
    url = _setup_url()
    github = re.match(r"https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?$", url or "")
    if github is None:
        assert links == []
        assert "OWNER/REPO" not in readme
        assert "docs/notebooks.md#on-mybinderorg-without-installing-anything" in readme
        launch = (ROOT / "docs" / "notebooks.md").read_text()
        assert "## On mybinder.org, without installing anything" in launch
        assert "https://mybinder.org/v2/gh/<owner>/<repository>/HEAD?urlpath=lab" in launch
    else:
        owner, name = github.groups()
        assert links
        for link in links:
            assert link.startswith(f"https://mybinder.org/v2/gh/{owner}/{name}/"), link
            folder = re.search(r"urlpath=lab/tree/([\w./-]+)", link)
            assert folder is None or list((ROOT / folder.group(1)).glob("*.ipynb"))
