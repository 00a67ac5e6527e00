"""Benchmarks of rna_localization: ``make bench`` (``python -m benchmarks [--quick]``).

Every figure is a ratio of two timings (or sizes) measured in the same run, on
the same data, so that a shared, noisy machine changes both sides alike. The
results, with a description of the machine, are written to
``benchmarks/RESULTS.md``.

Modules
-------
bench_distances
    ``nearest_distances`` against :mod:`benchmarks.naive` (the old pipeline's
    algorithm) and against labeling the two segmentations.
bench_insert
    Objects per second into PostgreSQL through ``write_image_objects`` (COPY).
bench_run
    ``run`` on the simulated 20-image demo data set against the floor of
    reading and labeling its TIFFs; peak memory with 5 and 20 images.
bench_fullframe
    One simulated full confocal frame (60 x 2048 x 2048): label images stored
    as runs against whole-volume zlib, extract's peak memory against the raw
    stack, and ``run`` against the floor of reading and labeling its TIFFs.
bench_workers
    ``segment_folder`` with 1 and 2 worker processes.
bench_segmentation
    Segmentation time: today's workflows against the first release's (aicssegmentation steps).
"""
