"""Install rna_localization: ``pip install -e .`` (``.[test]`` for the test tools,
``.[formats]`` to import .czi, .nd2 and .lif files, ``.[anndata]`` for the .h5ad export,
``.[napari]`` for the viewer)."""

import re
import runpy
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
# The version is defined once, in the package (read here as text: nothing is installed yet).
VERSION = re.search(r'^__version__ = "([^"]+)"$',
                    (HERE / "rna_localization" / "__init__.py").read_text(encoding="utf-8"),
                    flags=re.MULTILINE).group(1)
# The requirements too, from the one list doctor checks (standard library only, so runnable now).
DEPENDENCIES = runpy.run_path(str(HERE / "rna_localization" / "_dependencies.py"))

setup(
    name="rna_localization",
    version=VERSION,
    description="Where RNA sits inside cells in 3D microscopy: segmentation, exact distances, "
    "PostgreSQL, cumulative distributions.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.11",
    packages=find_packages(include=["rna_localization", "rna_localization.*"]),
    include_package_data=True,
    install_requires=DEPENDENCIES["install_requires"](),
    extras_require=DEPENDENCIES["EXTRAS"],
    entry_points={"console_scripts": ["rna-localization = rna_localization.cli:main"]},
)
