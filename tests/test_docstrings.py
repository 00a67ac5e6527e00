"""Every docstring example of the package runs and gives what it shows."""

import doctest
import importlib
import pkgutil

import pytest

import rna_localization

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(rna_localization.__path__, "rna_localization.")
    if not info.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
