"""The packages rna_localization needs, listed once.

``setup.py`` installs them (it reads this file without importing the
package: standard library only here), ``doctor`` checks them, and a test
checks that ``environment.yml`` asks conda for the same minimum versions.
"""

from __future__ import annotations

__all__ = ["CHECKED", "EXTRAS", "REQUIREMENTS", "install_requires"]

#: (distribution, minimum version, import name, pip extras): what ``pip install`` needs.
REQUIREMENTS = (
    ("numpy", "1.24", "numpy", ""),
    ("scipy", "1.10", "scipy", ""),
    ("numba", "0.60", "numba", ""),  # compiled loops: distance transforms, apertures' stencil
    ("scikit-image", "0.21", "skimage", ""),
    ("tifffile", "2023.1", "tifffile", ""),
    ("pandas", "2.0", "pandas", ""),
    ("psycopg2-binary", "2.9", "psycopg2", ""),
    ("SQLAlchemy", "2.0", "sqlalchemy", ""),
    ("seaborn", "0.13", "seaborn", ""),
    ("matplotlib", "3.7", "matplotlib", ""),
    ("tqdm", "4.60", "tqdm", ""),
    ("pgserver", "0.1.4", "pgserver", ""),
    ("dask", "2024.1", "dask", "distributed"),
    ("cryptography", "41", "cryptography", ""),  # the local Dask cluster's private TLS certificate
    ("bokeh", "3.1", "bokeh", ""),  # the Dask dashboard's pages
)

#: Optional groups: ``pip install -e '.[name]'``.
EXTRAS = {
    "notebooks": ["jupyterlab", "ipywidgets>=8", "papermill>=2.4", "ipykernel"],
    "test": ["pytest>=7", "pytest-timeout>=2", "pytest-xdist>=3", "ruff>=0.5", "papermill>=2.4",
             "nbclient>=0.8",
             "nbformat>=5", "ipykernel", "ipywidgets>=8",
             "anndata>=0.11", "pandas>=3",  # the AnnData export's round trip (see "anndata")
             # The viewer's layers in napari's headless model (no Qt, no window).
             "napari>=0.5"],
    "bench": ["big-fish-reloaded>=0.6"],
    # `rna-localization import` of .czi, .nd2 and .lif files (TIFFs need none of these).
    "formats": ["bioio>=1.0", "bioio-czi>=1.0", "bioio-nd2>=1.0", "bioio-lif>=1.0"],
    # `rna-localization export --format anndata` (.h5ad). pandas >= 3 keeps pip from
    # downgrading pandas for the newest anndata on Python 3.11 (0.12.7+ pin pandas < 3;
    # 0.12.6 and the 0.13 line on Python 3.12 work with pandas 3).
    "anndata": ["anndata>=0.11", "pandas>=3"],
    # `rna-localization view` / rna_localization.view: one image in napari.
    "napari": ["napari[all]>=0.5"],
}

# Distributions that provide the same module as a required one (conda's psycopg2).
_ALSO_FROM = {"psycopg2-binary": ("psycopg2",)}


def install_requires() -> list[str]:
    """:data:`REQUIREMENTS` as pip requirement strings.

    Examples
    --------
    >>> install_requires()[0]
    'numpy>=1.24'
    >>> [r for r in install_requires() if r.startswith("dask")]
    ['dask[distributed]>=2024.1']
    """
    return [f"{name}{f'[{extras}]' if extras else ''}>={minimum}"
            for name, minimum, _, extras in REQUIREMENTS]


def _checked() -> tuple[tuple[str, tuple[str, ...], str, str], ...]:
    packages = []
    for name, minimum, module, extras in REQUIREMENTS:
        if name == "bokeh":  # only the dashboard's web pages: not a reason to stop a run
            continue
        packages.append((module, (name, *_ALSO_FROM.get(name, ())), minimum, ""))
        if extras == "distributed":
            packages.append(("distributed", ("distributed",), minimum, ""))
    bioio = next(r for r in EXTRAS["formats"] if r.startswith("bioio>="))
    packages.append(("bioio", ("bioio",), bioio.partition(">=")[2], "import FILE.czi/.nd2/.lif"))
    return tuple(packages)


#: What ``doctor`` checks: (import name, distribution name(s), minimum version,
#: the command needing it if optional, else "").
CHECKED = _checked()
