"""Brute-force reference for the deduplication benchmark: every pair (i < j) of unit
vectors with cosine similarity strictly above a threshold, as numpy computes it with
`X @ X.T` in blocks of rows (each block against the rows from its own start on).

Usage: python3 dedup_numpy.py VECTORS.f32 N DIM THRESHOLD
VECTORS.f32 holds N*DIM little-endian float32, row-major, already unit length.
Prints one JSON line: {"n", "dim", "seconds", "pairs", "threads"}.
"""

import json
import os
import sys
import time

import numpy as np


def main() -> None:
    path, n, dim, threshold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    x = np.fromfile(path, dtype="<f4").reshape(n, dim)
    block = 1024
    start = time.perf_counter()
    pairs = 0
    for i0 in range(0, n, block):
        rows = x[i0 : i0 + block]
        sims = rows @ x[i0:].T  # columns j >= i0
        hit = sims > threshold
        # keep j > i only: never a vector with itself
        hit &= np.triu(np.ones(hit.shape, dtype=bool), k=1)
        ii, jj = np.nonzero(hit)
        pairs += len(ii)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "n": n,
                "dim": dim,
                "seconds": seconds,
                "pairs": pairs,
                "threads": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
