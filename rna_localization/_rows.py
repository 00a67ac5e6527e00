"""Row-wise statistics of arrays with holes (NaN): one sort for every row at once, where
``np.nanmedian`` along an axis loops over the rows."""

from __future__ import annotations

import numpy as np


def row_medians(values: np.ndarray) -> np.ndarray:
    """Each row's median of its values that are not NaN (NaN where none is).

    Parameters
    ----------
    values : (N, M) ndarray of float

    Returns
    -------
    (N,) ndarray, `values`' dtype

    Examples
    --------
    >>> row_medians(np.array([[1.0, np.nan, 3.0, 10.0], [np.nan, np.nan, np.nan, np.nan]]))
    array([ 3., nan])
    """
    ordered = np.sort(values, axis=1)  # NaN last
    count = np.count_nonzero(~np.isnan(values), axis=1)
    rows = np.arange(values.shape[0])
    # A row of NaN reads NaN at any place.
    return 0.5 * (ordered[rows, (count - 1) // 2] + ordered[rows, count // 2])
