"""``python -m benchmarks [--quick]``: every benchmark, then ``benchmarks/RESULTS.md``.

Each figure is a ratio measured in the same run (this machine is shared and
noisy: both sides of a ratio see the same load). ``--quick`` uses small sizes
for a smoke check; it, and ``--only``, write their results to the temporary
folder instead of replacing ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._common import Section, machine_description, section_markdown

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["distances", "insert", "bigdb", "run", "fullframe", "workers", "segmentation",
              "detection", "quantification", "playground"]


def _demo_dataset(workdir: Path, quick: bool) -> Path:
    from rna_localization.synthetic import simulate_dataset

    kwargs = {"n_images": 4, "shape": (16, 128, 128)} if quick else {"n_images": 20}
    print(f"simulating the demo data set ({kwargs['n_images']} images) ...", flush=True)
    return simulate_dataset(workdir / "demo", seed=0, **kwargs)


def _external_segmentation(quick: bool) -> Section:
    """benchmarks/bench_segmentation.py (written separately), run as its own process."""
    section = Section("Segmentation time: today's workflows against the first release's")
    script = HERE / "bench_segmentation.py"
    if not script.is_file():
        section.notes.append("Skipped: benchmarks/bench_segmentation.py is not there yet.")
        return section
    command = [sys.executable, "-m", "benchmarks.bench_segmentation"]
    if quick and "--quick" in script.read_text(encoding="utf-8"):
        command.append("--quick")
    start = time.perf_counter()
    done = subprocess.run(command, cwd=HERE.parent, capture_output=True, text=True, check=False)
    section.seconds = time.perf_counter() - start
    output = done.stdout.strip()
    print(output)
    if done.returncode != 0:
        section.notes.append(f"`{' '.join(command[1:])}` failed (exit {done.returncode}):\n\n```\n"
                             f"{done.stderr.strip()[-2000:]}\n```")
    else:
        section.notes.append(f"Output of `python -m benchmarks.bench_segmentation`:\n\n```\n"
                             f"{output}\n```")
    return section


def _markdown(sections: list[Section], quick: bool, total: float) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`python -m benchmarks{' --quick' if quick else ''}`) on "
        f"{when}, in {total / 60:.1f} minutes. Every figure is a ratio of two measurements "
        "taken in the same run, on the same data: the machine is shared, so absolute times "
        "vary from run to run while the ratios hold.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {what} | {value} |" for what, value in machine_description()],
        "",
        "## Summary",
        "",
        "| benchmark | figure | value | target | |",
        "|---|---|---|---|---|",
    ]
    for section in sections:
        for figure in section.figures:
            lines.append(f"| {section.title} | {figure.name} | {figure.value} | "
                         f"{figure.target} | {figure.verdict} |")
    for section in sections:
        lines += ["", section_markdown(section)]
    return "\n".join(lines).rstrip() + "\n"


def _print(section: Section) -> None:
    print(f"\n== {section.title}  ({section.seconds:.0f} s)")
    width = max((len(f.name) for f in section.figures), default=0)
    for figure in section.figures:
        target = f"  (target {figure.target}: {figure.verdict})" if figure.target else ""
        print(f"  {figure.name:<{width}}  {figure.value}{target}")
    if not section.figures:
        for note in section.notes:
            print("  " + note.splitlines()[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke check")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    parser.add_argument("--output", type=Path, help="results file (default benchmarks/RESULTS.md; "
                        "with --quick or --only, one in the temporary folder)")
    args = parser.parse_args(argv)
    chosen = args.only or BENCHMARKS
    # Only a full run of every benchmark replaces the real results.
    partial = args.quick or (args.only and set(args.only) != set(BENCHMARKS))
    output = args.output or (Path(tempfile.gettempdir()) / "rna_localization-RESULTS-partial.md"
                             if partial else HERE / "RESULTS.md")

    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="rna_localization_bench_"))
    sections: list[Section] = []
    dataset = None
    try:
        for name in chosen:
            print(f"\n>> {name}", flush=True)
            start = time.perf_counter()
            if name == "distances":
                from . import bench_distances

                section = bench_distances.run(quick=args.quick)
            elif name == "insert":
                from . import bench_insert

                section = bench_insert.run(workdir, quick=args.quick)
            elif name == "bigdb":
                from . import bench_bigdb

                dataset = dataset or _demo_dataset(workdir, args.quick)
                section = bench_bigdb.run(dataset, workdir, quick=args.quick)
            elif name == "run":
                from . import bench_run

                dataset = dataset or _demo_dataset(workdir, args.quick)
                section = bench_run.run(dataset, workdir, small_images=2 if args.quick else 5,
                                        quick=args.quick)
            elif name == "fullframe":
                from . import bench_fullframe

                section = bench_fullframe.run(workdir, quick=args.quick)
            elif name == "workers":
                from . import bench_workers

                dataset = dataset or _demo_dataset(workdir, args.quick)
                section = bench_workers.run(dataset, workdir, n_images=4 if args.quick else 12,
                                           tile=1 if args.quick else 2,
                                           repeat=1 if args.quick else 2)
            elif name == "detection":
                from . import bench_detection

                section = bench_detection.run(quick=args.quick)
            elif name == "quantification":
                from . import bench_quantification

                section = bench_quantification.run(quick=args.quick)
            elif name == "playground":
                from . import bench_playground

                section = bench_playground.run(quick=args.quick)
            else:
                section = _external_segmentation(args.quick)
            section.seconds = section.seconds or time.perf_counter() - start
            sections.append(section)
            _print(section)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    total = time.perf_counter() - started
    output.write_text(_markdown(sections, args.quick, total), encoding="utf-8")
    print(f"\n{len(sections)} benchmarks in {total / 60:.1f} min; results in {output}")
    missed = [f for s in sections for f in s.figures if f.met is False]
    if missed:
        print(f"{len(missed)} target(s) not met: " + "; ".join(f.name for f in missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
