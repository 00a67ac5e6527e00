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


def test_readme_has_a_binder_badge_for_the_notebooks():
    readme = (ROOT / "README.md").read_text()
    (link,) = re.findall(r"\[!\[Binder\]\(https://mybinder\.org/badge_logo\.svg\)\]\(([^)]+)\)",
                         readme)
    assert link.startswith("https://mybinder.org/v2/gh/")
    folder = re.search(r"urlpath=lab/tree/([\w./-]+)", link).group(1)
    assert list((ROOT / folder).glob("*.ipynb"))
