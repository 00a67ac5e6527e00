"""Install rna_localization: ``pip install -e .`` (``.[test]`` for the test tools,
``.[formats]`` to import .czi, .nd2 and .lif files)."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="rna_localization",
    version="0.1.0",
    description="Where RNA sits inside cells in 3D microscopy: segmentation, exact distances, "
    "PostgreSQL, cumulative distributions.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.11",
    packages=find_packages(include=["rna_localization", "rna_localization.*"]),
    include_package_data=True,
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "scikit-image>=0.21",
        "tifffile>=2023.1",
        "pandas>=2.0",
        "psycopg2-binary>=2.9",
        "SQLAlchemy>=2.0",
        "seaborn>=0.13",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "pgserver>=0.1.4",
        "dask[distributed]>=2024.1",
        "cryptography>=41",  # the local Dask cluster's private TLS certificate
        "bokeh>=3.1",  # the Dask dashboard's pages
    ],
    extras_require={
        "notebooks": ["jupyterlab", "ipywidgets>=8", "papermill>=2.4", "ipykernel"],
        "test": ["pytest>=7", "pytest-timeout>=2", "ruff>=0.5", "papermill>=2.4", "nbclient>=0.8",
                 "nbformat>=5",
                 "ipykernel", "ipywidgets>=8"],
        "bench": ["big-fish-reloaded>=0.6"],
        # `rna-localization import` of .czi, .nd2 and .lif files (TIFFs need none of these).
        "formats": ["bioio>=1.0", "bioio-czi>=1.0", "bioio-nd2>=1.0", "bioio-lif>=1.0"],
    },
    entry_points={"console_scripts": ["rna-localization = rna_localization.cli:main"]},
)
