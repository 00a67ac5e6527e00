"""Running notebooks headless in the tests: papermill on a kernel that talks over Unix sockets.

Two things make papermill hang now and then in busy test runs: the kernel's TCP
ports are picked free and then bound later, so another process (a Dask cluster
picks ports too) can take one in between; and a lost message leaves the client
waiting forever for a reply the kernel already sent. Unix sockets in a private
folder remove the first; a per-cell timeout with one more attempt turns the
second into a retry instead of a CI run that never ends.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
from jupyter_client.manager import KernelManager

#: Seconds a cell may run before the attempt is abandoned (the slowest cell takes ~15 s).
CELL_TIMEOUT = 300


def execute_notebook(notebook: Path, output: Path, *, parameters: dict, cwd: Path,
                     sockets: Path) -> nbformat.NotebookNode:
    """Execute `notebook` into `output` with papermill; return the executed notebook."""
    sockets.mkdir(parents=True, exist_ok=True)
    for attempt in (1, 2):
        manager = KernelManager(kernel_name="python3", transport="ipc",
                                ip=str(sockets / f"k{attempt}"))
        try:
            papermill.execute_notebook(
                str(notebook), str(output), parameters=parameters, kernel_name="python3",
                cwd=str(cwd), progress_bar=False, execution_timeout=CELL_TIMEOUT, km=manager,
            )
            return nbformat.read(output, as_version=4)
        except TimeoutError:
            if attempt == 2:
                raise
        finally:
            if manager.has_kernel:
                manager.shutdown_kernel(now=True)
    return None  # not reached: the second attempt returns or raises
