"""Helpers shared by the test files: the database a config names, its tables, the CLI's commands."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import pandas as pd

from rna_localization import steps
from rna_localization.cli import build_parser
from rna_localization.config import Config, load_config
from rna_localization.db import Database
from rna_localization.db.backup import export_tables


def database(config) -> Database:
    """The database of a Config, or of a pipeline.toml by its path."""
    return Database.from_config(config if isinstance(config, Config) else load_config(config))


def simulated_dataset(folder: Path, database_name: str):
    """Four simulated confocal images (24 x 192 x 192, seed 2) written as a data set whose
    config names `database_name`: the data folder, its pipeline.toml and its Config."""
    from rna_localization.synthetic import simulate_dataset

    data = simulate_dataset(folder, n_images=4, seed=2, shape=(24, 192, 192))
    toml = data / "pipeline.toml"
    text = toml.read_text(encoding="utf-8")
    toml.write_text(text.replace('name = "demo"', f'name = "{database_name}"'), encoding="utf-8")
    return data, toml, load_config(toml)


def assert_nothing_stale(config_path) -> None:
    """Extracting again finds nothing changed: no warning, every image skipped."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", steps.PipelineWarning)
        report = steps.extract(load_config(config_path))
    assert set(report["status"]) == {"skipped"}


def table_bytes(config, folder: Path) -> dict[str, bytes]:
    """Every table of the config's database as its CSV export's bytes, by file name."""
    return {p.name: p.read_bytes() for p in export_tables(database(config), folder)}


def table_frames(config, folder: Path) -> dict[str, pd.DataFrame]:
    """Every table of the config's database as read back from its CSV export, by table name."""
    return {p.stem: pd.read_csv(p) for p in export_tables(database(config), folder)}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """The command line's subcommands and their parsers, from the parser itself."""
    (action,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)
