"""Cut the bundled Fashion-MNIST subset (interpscan/bundled/fashion-mnist-small) from the original files.

Class-balanced and seeded, written in the original IDX format (gzip), so the same reader serves both.
Usage: python scripts/make_fashion_mnist_small.py [SOURCE_DIR]   (default: the Debian package's directory)
"""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np

from interpscan.data import DEBIAN_FASHION_MNIST, FASHION_MNIST_FILES, read_idx

PER_CLASS = {"train": 250, "test": 100}  # 2,500 training and 1,000 test images, about 1.6 MB compressed
SEED = 20221


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    # mtime=0 keeps the archive byte-identical from run to run
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes(), compresslevel=9, mtime=0))


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEBIAN_FASHION_MNIST
    out = Path(__file__).resolve().parents[1] / "interpscan" / "bundled" / "fashion-mnist-small"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for split, (images_name, labels_name) in FASHION_MNIST_FILES.items():
        images = read_idx(source / f"{images_name}.gz")
        labels = read_idx(source / f"{labels_name}.gz")
        picked = np.sort(
            np.concatenate(
                [rng.choice(np.flatnonzero(labels == c), PER_CLASS[split], replace=False) for c in range(10)]
            )
        )
        write_idx(out / f"{images_name}.gz", images[picked])
        write_idx(out / f"{labels_name}.gz", labels[picked])
        print(f"{split}: {len(picked)} images from {source}")


if __name__ == "__main__":
    main()
