"""environment.yml, setup.py and the README's install instructions agree."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

import rna_localization
from rna_localization._dependencies import CHECKED, EXTRAS, REQUIREMENTS, install_requires
from rna_localization.doctor import PACKAGES

ROOT = Path(__file__).resolve().parents[1]


def _environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _setup_requirements() -> list[str]:
    extras = [r for name, reqs in EXTRAS.items() if name != "bench" for r in reqs]
    return install_requires() + extras


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


def test_setup_installs_the_one_version_and_dependency_list():
    done = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == rna_localization.__version__
    done = subprocess.run(
        [sys.executable, "-c", "import runpy, sys, setuptools\n"
         "setuptools.setup = lambda **kw: print(sorted(kw['install_requires']))\n"
         "sys.argv = ['setup.py']\nrunpy.run_path('setup.py')"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == str(sorted(install_requires()))


def test_doctor_checks_every_required_package_at_its_minimum():
    checked = {distributions[0]: minimum for _, distributions, minimum, _ in PACKAGES}
    assert PACKAGES == CHECKED
    for name, minimum, _, extras in REQUIREMENTS:
        if name != "bokeh":  # the dashboard's pages only
            assert checked[name] == minimum, name
        if extras == "distributed":
            assert checked["distributed"] == minimum


def test_conda_environment_asks_for_the_same_minimum_versions():
    conda = {}
    listed = _environment()["dependencies"]
    pip = next(d["pip"] for d in listed if isinstance(d, dict))
    for dependency in [d for d in listed if isinstance(d, str)] + pip:
        if ">=" in dependency:
            name, _, minimum = dependency.partition(">=")
            conda[name.lower()] = minimum
    for name, minimum, _, extras in REQUIREMENTS:
        if name == "psycopg2-binary":  # from pip only (see above)
            continue
        assert conda.get(name.lower()) == minimum, name
        if extras:
            assert conda.get(extras) == minimum, extras
