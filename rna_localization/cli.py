"""The command line: ``rna-localization <command> [--config pipeline.toml]``.

A thin shell: :func:`build_parser` describes the commands, :data:`COMMANDS`
maps each to one function that loads the config and calls the library, and
:func:`main` runs it. The library (numpy, pandas, scipy, Dask, matplotlib)
is imported inside the command functions, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import textwrap
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from ._errors import USER_ERRORS

__all__ = ["COMMANDS", "build_parser", "main"]

#: The simulated microscopes, as --help says them (the simulator checks the name:
#: rna_localization.synthetic.PRESETS, not imported here so that --help stays fast).
PRESET_HELP = ("simulated microscope: confocal (the default; spinning disk, 0.065 µm pixels) "
               "or widefield (0.11 µm pixels, a brighter, hazier background)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="rna-localization",
        description="Where RNA sits in 3D microscopy stacks: segment, extract objects into "
        "PostgreSQL, measure exact distances, normalize, compute cumulative distributions, plot.",
    )
    parser.add_argument("--version", action="version", version=_version())
    config_parent = argparse.ArgumentParser(add_help=False)
    config_parent.add_argument("--config", default="pipeline.toml", type=Path,
                               help="pipeline config file (default: ./pipeline.toml)")
    dask_parent = argparse.ArgumentParser(add_help=False)
    dask_parent.add_argument("--scheduler", metavar="ADDRESS",
                             help="Dask scheduler to run images on, e.g. tcp://host:8786 "
                             "(default: dask.scheduler; empty: this machine)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, *, help, description, examples, parents=(config_parent,)):  # noqa: A002
        """A subcommand whose --help says what it does, in a sentence, and shows examples."""
        return commands.add_parser(
            name, parents=list(parents), help=help, description=textwrap.fill(description, 79),
            epilog="Examples:\n" + "\n".join(f"  rna-localization {name} {e}".rstrip() for e in examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    db = command("db", help="the embedded PostgreSQL server",
                 description="Start, stop or check the embedded PostgreSQL server of a data set, "
                 "print its URL (postgresql://..., for psql, pandas and SQLAlchemy) or open psql "
                 "on the pipeline's database.",
                 examples=["start --config pipeline.toml", "url --config pipeline.toml",
                           "psql --config pipeline.toml"])
    db.add_argument("action", choices=["start", "stop", "status", "url", "psql"])

    segment = command("segment", help="batch-segment raw-data into segmentations",
                      description="Segment every raw stack of each structure into "
                      "<structure>/segmentations/<name>_seg.tif and write a QC page; existing "
                      "segmentations are kept unless --overwrite.",
                      examples=["--config pipeline.toml",
                                "--structure rna --workflow rna_params.toml --overwrite"])
    segment.add_argument("--structure", action="append",
                         help="structure to segment (repeatable; default: every structure)")
    segment.add_argument("--workflow", type=Path, help="parameter file saved by a playground notebook")
    segment.add_argument("--overwrite", action="store_true", help="replace existing segmentations")
    segment.add_argument("--workers", type=int,
                         help="processes (default: distances.workers; 0: one per core, as many "
                              "as fit in memory)")

    extract = command("extract", parents=(config_parent, dask_parent),
                      help="objects of every structure into the database",
                      description="Extract the objects of every structure (area, centroid, "
                      "intensities, apertures) into the database, one table per structure.",
                      examples=["--config pipeline.toml", "--scheduler tcp://login1:8786"])
    extract.add_argument("--overwrite", action="store_true", help="extract images again")

    distances = command("distances", parents=(config_parent, dask_parent),
                        help="nearest structure_2 object for every structure_1 object",
                        description="Measure the exact distance (microns) from every structure_1 "
                        "object to the nearest structure_2 object of its image.",
                        examples=["--config pipeline.toml", "--overwrite"])
    distances.add_argument("--overwrite", action="store_true", default=None,
                           help="measure again (default: distances.overwrite)")

    command("metadata", help="the images table from the metadata CSV",
            description="Load the metadata CSV (one row per image) into the images table.",
            examples=["--config pipeline.toml"])
    command("normalize", help="normalized_intensity (molecules per object)",
            description="Estimate the molecules in every object (normalized_intensity) from each "
            "group's single-molecule reference, and print the references.",
            examples=["--config pipeline.toml"])
    command("distributions", help="cumulative distributions CSV under output_dir/data/",
            description="Compute every image's cumulative distributions of RNA around structure_2 "
            "into output_dir/data/cumulative_distributions.csv.",
            examples=["--config pipeline.toml"])
    command("plot", help="figures under output_dir/plots/",
            description="Plot the cumulative distributions as PDF and PNG figures under "
            "output_dir/plots/, legends and panel titles in words ([plot.labels] sets yours).",
            examples=["--config pipeline.toml"])
    stats = command("stats", help="group figures with bootstrap CIs and permutation tests",
                    description="Compare groups of images (plot.hue, plot.col, plot.row, or --by): "
                    "each group's mean curve, distance_50, auc and enrichment with bootstrap 95% "
                    "intervals over images, and permutation tests between groups differing in one "
                    "factor, into output_dir/data/stats.csv and stats_tests.csv.",
                    examples=["--config pipeline.toml", "--by rna_type --by cycle --seed 1"])
    stats.add_argument("--by", action="append", metavar="COLUMN",
                       help="metadata column defining the groups (repeatable; default: plot.hue "
                       "or normalization.group_by, plot.col, plot.row)")
    from .config import N_BOOTSTRAP, N_PERMUTATIONS, SEED

    stats.add_argument("--bootstrap", type=int, help=f"bootstrap resamples (default {N_BOOTSTRAP})")
    stats.add_argument("--permutations", type=int,
                       help=f"random permutations, or all of them when fewer (default {N_PERMUTATIONS})")
    stats.add_argument("--seed", type=int, help=f"random seed (default {SEED})")
    view = command("view", help="one image in napari (needs napari)",
                   description="Open one image in napari: every structure's raw stack and "
                   "segmentation, and the structure_1 objects as points coloured by distance, in "
                   "microns (needs napari: pip install \"napari[all]\").",
                   examples=["embryo1 --config pipeline.toml"])
    view.add_argument("name", metavar="NAME", help="image name (the raw file's name without extension)")
    command("doctor", help="check Python, packages, config, database and data layout",
            description="Check Python, the packages, the config, the database and the data "
            "layout, and say how to fix what is wrong (exit status 1 if anything is).",
            examples=["--config pipeline.toml"])
    command("run", parents=(config_parent, dask_parent),
            help="extract, distances, metadata, normalize, distributions, plot",
            description="Run extract, distances, metadata, normalize, distributions and plot in "
            "order, going on where a previous run stopped.",
            examples=["--config pipeline.toml", "--config pipeline.toml --scheduler tcp://login1:8786"])

    export = command("export", help="every table as CSV, or the objects as AnnData",
                     description="Write every table of the database as <table>.csv into a folder "
                     "(default: output_dir/backup/), or with --format anndata one <structure>.h5ad "
                     "per structure (default folder: output_dir/anndata/).",
                     examples=["--config pipeline.toml", "--to backup-csv",
                               "--format anndata --to h5ad"])
    export.add_argument("--to", type=Path, help="folder (default: output_dir/backup/, or "
                        "output_dir/anndata/ with --format anndata)")
    export.add_argument("--format", choices=["csv", "anndata"], default="csv",
                        help="csv: every table (default); anndata: objects as .h5ad (needs anndata)")
    backup = command("backup", help="whole database with pg_dump",
                     description="Save the whole database to one file with pg_dump.",
                     examples=["--to project.dump"])
    backup.add_argument("--to", type=Path, required=True, help="backup file to write")
    restore = command("restore", help="whole database with pg_restore",
                      description="Restore a database saved by `rna-localization backup`, with "
                      "pg_restore.",
                      examples=["--from project.dump", "--from project.dump --database copy"])
    restore.add_argument("--from", dest="source", type=Path, required=True, help="backup file to read")
    restore.add_argument("--database", help="restore into this database on the same server "
                         "(default: the config's database)")

    import_ = command(
        "import",
        help="split multi-channel microscope files (ImageJ/OME-TIFF; CZI, ND2, LIF with the "
        "'formats' extra) into <structure>/raw-data/<name>.tif",
        description="Split multi-channel microscope files (ImageJ/OME-TIFF; CZI, ND2, LIF with "
        "the 'formats' extra) into one <structure>/raw-data/<name>.tif stack per structure.",
        examples=["scans/embryo1.czi scans/embryo2.czi --channels rna=0,centrosomes=1 "
                  "--data-dir data/exp1"],
    )
    import_.add_argument("files", nargs="+", type=Path, metavar="FILE", help="microscope file(s)")
    import_.add_argument("--channels", required=True, metavar="S=I,...",
                         help="structure=channel pairs, channels from 0, e.g. rna=0,centrosomes=1")
    import_.add_argument("--data-dir", type=Path,
                         help="data directory to write into (default: data.data_dir of --config)")
    import_.add_argument("--overwrite", action="store_true", help="replace existing stacks")

    init = command("init", parents=(), help="write a commented pipeline.toml for a data directory",
                   description="Write a commented pipeline.toml for the structures, files and "
                   "voxel size found in a data directory.",
                   examples=["data/exp1", "data/exp1 --out exp1.toml --force"])
    init.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="the data directory")
    init.add_argument("--out", type=Path, help="file to write (default: DATA_DIR/pipeline.toml)")
    init.add_argument("--force", action="store_true", help="replace an existing file")

    simulate = command("simulate", parents=(), help="a simulated data set with ground truth",
                       description="Simulate a data set of embryo stacks with its ground truth "
                       "and its pipeline.toml.",
                       examples=["--out data/demo --images 20 --seed 0",
                                 "--out data/small --images 2 --shape 14 64 64",
                                 "--out data/widefield --preset widefield"])
    simulate.add_argument("--out", type=Path, required=True, help="folder to create")
    simulate.add_argument("--images", type=int, default=20, help="number of images (default 20)")
    simulate.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    simulate.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"),
                          help="stack shape in voxels")
    simulate.add_argument("--preset", help=PRESET_HELP)

    demo = command("demo", parents=(), help="simulate, segment, run, and report against the truth",
                   description="Simulate a data set, segment it, run the whole pipeline on it and "
                   "report the results against the ground truth.",
                   examples=["", "--out /tmp/demo --images 8 --seed 1 --ideal-masks",
                             "--out data/demo-widefield --preset widefield"])
    demo.add_argument("--out", type=Path, default=Path("data/demo"), help="folder (default data/demo)")
    demo.add_argument("--images", type=int, default=20, help="number of images (default 20)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--ideal-masks", action="store_true",
                      help="use the simulator's ideal masks instead of segmenting")
    demo.add_argument("--preset", help=PRESET_HELP)
    return parser


def _version() -> str:
    from . import __version__

    return f"rna-localization {__version__}"


def _show(frame, title: str, max_rows: int = 12) -> None:
    print(f"\n{title}")
    if frame.empty:
        print("  (nothing)")
        return
    print(frame.to_string(index=False, max_rows=max_rows))


def _summary(frame, title: str) -> None:
    import pandas as pd

    if frame.empty:
        print(f"{title}: nothing to do")
        return
    counts = frame["status"].value_counts().to_dict()
    objects = int(pd.to_numeric(frame["objects"], errors="coerce").fillna(0).sum())
    print(f"{title}: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + f"; {objects} objects")


def _config(args):
    """The config of ``--config``, with ``--scheduler`` (if the command has it) over ``dask.scheduler``."""
    from .config import load_config

    config = load_config(args.config)
    if getattr(args, "scheduler", None):
        config = dataclasses.replace(config, dask=dataclasses.replace(config.dask, scheduler=args.scheduler))
    return config


def _database(config):
    from .db import Database

    return Database.from_config(config)


def _db_command(args) -> int:
    from .db import Database, server_status, stop_server
    from .db.server import client_program

    config, action = _config(args), args.action
    pgdata = config.data.data_dir / ".pgdata"
    if action in ("start", "stop", "status") and config.database.url:
        print(f"database.url is set: the pipeline uses that server, not an embedded one "
              f"(nothing to {action}).")
        return 0
    if action == "status":
        print(server_status(pgdata))
        return 0
    if action == "stop":
        print("stopped" if stop_server(pgdata) else "not running")
        return 0
    db = Database.from_config(config, keep_server=action == "start")
    if action == "start":
        print(f"running: {db.url}")
    elif action == "url":
        print(db.url)
    else:  # psql
        dsn, env = db.client_connection()  # the password, if any, stays off the command line
        import subprocess

        return subprocess.call([client_program("psql"), dsn], env=env)
    return 0


def _import_command(args) -> int:
    from .calibration import format_voxel_size
    from .importing import import_files, parse_channels

    channels = parse_channels(args.channels)  # before the config: a typo is the first thing to hear
    if args.data_dir is not None:
        data_dir, layout = args.data_dir, {}
    else:
        from .config import load_config

        config = load_config(args.config)
        data_dir = config.data.data_dir
        layout = {"raw_data_dir": config.data.raw_data_dir, "metadata_csv": config.data.metadata_csv,
                  "name_column": config.data.image_name_column}
    report = import_files(args.files, channels, data_dir, overwrite=args.overwrite, **layout)
    for row in report.itertuples():
        found = (f"voxel size {format_voxel_size(row.voxel_size)}" if row.voxel_size
                 else "no voxel size in the file")
        print(f"{row.name}: {row.status} from {row.source_file}"
              f"{f' series {row.series}' if row.n_series > 1 else ''} "
              f"(shape {'x'.join(map(str, row.shape))}, {found})")
    stated = {tuple(round(s, 6) for s in v) for v in report["voxel_size"] if v}
    unstated = sorted(report.loc[report["voxel_size"].isna(), "source_file"].unique())
    counts = report["status"].value_counts()
    skipped = (f", {counts.get('skipped', 0)} skipped (already there; --overwrite replaces them)"
               if counts.get("skipped", 0) else "")
    print(f"{Path(data_dir).resolve()}: {counts.get('imported', 0)} image(s) imported{skipped}; "
          + ", ".join(f"{s} from channel {c}" for s, c in channels.items()))
    if unstated:
        warnings.warn(f"{', '.join(unstated)} state(s) no voxel size: set [scale] in pipeline.toml "
                      f"by hand from the microscope's settings.", stacklevel=2)
    if len(stated) > 1:
        warnings.warn("the files state different voxel sizes ("
                      + "; ".join(format_voxel_size(v) for v in sorted(stated))
                      + "); the pipeline uses one, [scale] in pipeline.toml.", stacklevel=2)
    elif stated:
        print(f"voxel size stated by the files: {format_voxel_size(next(iter(stated)))}; "
              f"`rna-localization init {data_dir}` writes a pipeline.toml with it.")
    return 0


def _report_init(path: Path, survey) -> None:
    from .calibration import format_voxel_size
    from .config import DEFAULT_SPACING

    print(f"wrote {path}: structures {', '.join(survey.structures)}, "
          f"segmentation suffix {survey.segmentation_file_suffix or '_seg (none yet)'}, "
          f"metadata {survey.metadata_csv or '(none found)'}")
    if survey.voxel_size is None:
        warnings.warn("no raw stack states its voxel size: [scale] holds the defaults "
                      f"({format_voxel_size(DEFAULT_SPACING)}); set it from the microscope's "
                      f"settings in {path}.",
                      stacklevel=2)
    else:
        print(f"voxel size from the files: {format_voxel_size(survey.voxel_size)}")
        if len(survey.voxel_sizes) > 1:
            warnings.warn(f"the raw stacks state {len(survey.voxel_sizes)} different voxel sizes; "
                          f"the most common is in {path} (its comments list the others).",
                          stacklevel=2)
    print(f"check it, then: rna-localization doctor --config {path}")


def _stats_command(args) -> int:  # from the distributions CSV: no database needed
    from .analysis import STATS_FILE, STATS_TESTS_FILE, compute_statistics

    config = _config(args)

    options = {k: v for k, v in (("n_bootstrap", args.bootstrap),
                                 ("n_permutations", args.permutations), ("seed", args.seed))
               if v is not None}
    results = compute_statistics(config, by=args.by, **options)
    if not config.has_structure_2:  # nothing to compare: its info line says so
        return 0
    stats, tests = results["stats"], results["tests"]
    figures = stats[stats["figure"].isin(["distance_50", "auc"])].drop(columns="distance")
    _show(figures.round(3), "per group (mean over images, bootstrap 95% CI)", max_rows=40)
    _show(tests.round(4), "permutation tests between groups differing in one factor", max_rows=40)
    folder = config.output_dir / "data"
    print(f"\nwritten: {folder / STATS_FILE}, {folder / STATS_TESTS_FILE}")
    for path in results["plots"]:
        print(path)
    return 0


def _simulate_command(args) -> int:
    from .synthetic import simulate_dataset

    kwargs = {"shape": tuple(args.shape)} if args.shape else {}
    if args.preset is not None:
        kwargs["preset"] = args.preset
    out = simulate_dataset(args.out, n_images=args.images, seed=args.seed, **kwargs)
    print(f"simulated {args.images} images in {out}; run them with:\n"
          f"  rna-localization run --config {Path(out) / 'pipeline.toml'}")
    return 0


def _demo_command(args) -> int:
    from .demo import run_demo

    run_demo(args.out, n_images=args.images, seed=args.seed, ideal_masks=args.ideal_masks,
             preset=args.preset)
    return 0


def _init_command(args) -> int:
    from .init_config import write_config

    path, survey = write_config(args.data_dir, out=args.out, force=args.force)
    _report_init(path, survey)
    return 0


def _doctor_command(args) -> int:
    from .doctor import diagnose, format_findings

    findings = diagnose(args.config)  # not _config: a bad config is one of its findings
    print(format_findings(findings))
    return 1 if any(not finding.ok for finding in findings) else 0


def _segment_command(args) -> int:
    from .segmentation import segment_structure
    from .segmentation.batch import _count_images, _segment_summary

    if args.workflow and not args.structure:
        msg = "--workflow needs --structure: say which structure the parameter file is for."
        raise ValueError(msg)
    config = _config(args)
    for structure in args.structure or config.data.structures:
        written = segment_structure(config, structure, workflow_file=args.workflow,
                                    overwrite=args.overwrite, workers=args.workers)
        raw_dir, seg_dir = config.structure_dirs(structure)
        print(f"{structure}: {_segment_summary(written, _count_images(raw_dir), seg_dir)}")
    return 0


def _extract_command(args) -> int:
    from . import steps

    config = _config(args)
    _summary(steps.extract(config, overwrite=args.overwrite, db=_database(config)), "extract")
    return 0


def _distances_command(args) -> int:
    from . import steps

    config = _config(args)
    table = steps.measure_distances(config, overwrite=args.overwrite, db=_database(config))
    if config.has_structure_2:  # else the step said why it skipped
        _summary(table, "distances")
    return 0


def _metadata_command(args) -> int:
    from . import steps

    config = _config(args)
    table = steps.load_metadata(config, db=_database(config))
    print(f"images table: {len(table)} rows, columns {', '.join(table.columns)}")
    return 0


def _normalize_command(args) -> int:
    from . import steps

    config = _config(args)
    _show(steps.normalize(config, db=_database(config)), "single-molecule references")
    return 0


def _distributions_command(args) -> int:
    from . import steps

    config = _config(args)
    table = steps.compute_distributions(config, db=_database(config))
    if config.has_structure_2:
        print(f"cumulative distributions of {table['name'].nunique() if len(table) else 0} images "
              f"written to {config.output_dir / 'data' / steps.DISTRIBUTIONS_FILE}")
    return 0


def _plot_command(args) -> int:
    from . import steps

    for path in steps.make_plots(_config(args)):
        print(path)
    return 0


def _run_all_command(args) -> int:
    from . import steps

    config = _config(args)
    results = steps.run(config, db=_database(config))
    _summary(results["extract"], "extract")
    if "distances" in results:
        _summary(results["distances"], "distances")
    print(f"metadata: {len(results['metadata'])} images")
    _show(results["normalize"], "single-molecule references")
    print(f"\nmolecules per image: {config.output_dir / 'data' / steps.MOLECULES_FILE}")
    if config.has_structure_2:
        print(f"distributions: {config.output_dir / 'data' / steps.DISTRIBUTIONS_FILE}")
        print("plots: " + ", ".join(str(p) for p in results["plots"] if p.suffix == ".png"))
    return 0


def _export_command(args) -> int:
    config = _config(args)
    db = _database(config)
    if args.format == "anndata":
        from .anndata_export import export_anndata

        for path in export_anndata(config, args.to or config.output_dir / "anndata", db=db):
            print(path)
        return 0
    from .db.backup import export_tables

    folder = args.to or config.output_dir / "backup"
    paths = export_tables(db, folder)
    print(f"{len(paths)} tables written to {folder}")
    return 0


def _view_command(args) -> int:
    from .viewer import view

    view(args.name, _config(args))
    import napari  # view() imported it: installed

    napari.run()
    return 0


def _backup_command(args) -> int:
    from .db.backup import backup_database

    db = _database(_config(args))
    print(f"database {db.name!r} saved to {backup_database(db, args.to)}")
    return 0


def _restore_command(args) -> int:
    from .db.backup import restore_database

    db = _database(_config(args))
    target = db.with_name(args.database) if args.database else db
    restore_database(target, args.source)
    print(f"{args.source} restored into database {target.name!r}")
    return 0


#: Each command of :func:`build_parser` and the function running it (parsed arguments → exit status).
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "db": _db_command,
    "segment": _segment_command,
    "extract": _extract_command,
    "distances": _distances_command,
    "metadata": _metadata_command,
    "normalize": _normalize_command,
    "distributions": _distributions_command,
    "plot": _plot_command,
    "doctor": _doctor_command,
    "run": _run_all_command,
    "export": _export_command,
    "backup": _backup_command,
    "restore": _restore_command,
    "stats": _stats_command,
    "view": _view_command,
    "import": _import_command,
    "init": _init_command,
    "simulate": _simulate_command,
    "demo": _demo_command,
}


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


class Terminated(BaseException):
    """SIGTERM or SIGHUP received: unwind (closing transactions, clusters, the server) and exit.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` stops it.
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum, frame) -> None:
    raise Terminated(signum)


@contextmanager
def _terminate_cleanly():
    """Turn SIGTERM and SIGHUP into :class:`Terminated` while the command runs.

    Left to Python's default, they end the process at once, skipping the exit
    handlers: an embedded server this command started would run on, orphaned.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
               if s and signal.getsignal(s) is signal.SIG_DFL]  # nohup's ignored SIGHUP stays so
    previous = {s: signal.signal(s, _terminate) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rna-localization``; returns the exit status.

    Errors of input or setup are one line ``error: …`` and status 2; Ctrl-C is
    one line and 130; SIGTERM or SIGHUP one line and 128 + the signal's number,
    after the command has stopped what it started (the embedded server included).
    """
    try:
        with _terminate_cleanly():
            return _main(argv)
    except KeyboardInterrupt:  # also in the imports below, before any work
        print("interrupted: finished images are kept; run the command again to resume.",
              file=sys.stderr)
        return 130
    except Terminated as stop:
        print(f"terminated ({signal.Signals(stop.signum).name}): finished images are kept; run "
              f"the command again to resume.", file=sys.stderr)
        return 128 + stop.signum


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)  # --help and bad arguments end here, before any import
    import logging

    import psycopg2

    formatter, warnings.formatwarning = warnings.formatwarning, _format_warning
    info = logging.StreamHandler(sys.stdout)  # what the steps skip, as `info: ...` lines
    info.setFormatter(logging.Formatter("info: %(message)s"))
    logger = logging.getLogger("rna_localization")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(info)
    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as error:  # anything else is a bug: its traceback is shown
        print(f"error: {error}", file=sys.stderr)
        return 2
    except psycopg2.Error as error:  # e.g. the server is down: one line, never a password
        from .db.database import _redact

        lines = str(error).strip().splitlines() or [type(error).__name__]
        print(f"error: cannot use the database: {_redact(lines[0])} "
              f"(check database.url; `rna-localization doctor` checks the setup).", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = formatter
        logger.removeHandler(info)
        logger.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
