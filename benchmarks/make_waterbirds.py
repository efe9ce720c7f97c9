"""Write a Waterbirds-format folder of generated images, for trying the framework on real-sized data.

    python benchmarks/make_waterbirds.py data/waterbirds-sim --n 400 --size 224

writes ``metadata.csv``, the images in species folders and the segmentations, split in the
release's proportions (4,795 / 1,199 / 5,794 of 11,788), the place agreeing with the label in 95 % of
the training images; then ``[dataset] name = "waterbirds", root = "data/waterbirds-sim"`` reads it.
The images are the embedded benchmark's bars (orientation = label, corner patch = place), rendered
a chunk at a time: 20,000 images at 224 px take about 1.6 GB of disk, a few minutes, and memory that
does not grow with their number.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crayon_plugins.testing.benchmark_folders import write_waterbirds

SHARES = (4795, 1199, 5794)


def split_sizes(n: int) -> tuple[int, int, int]:
    """``n`` items split in the release's train / val / test proportions."""
    train, val = (round(n * share / sum(SHARES)) for share in SHARES[:2])
    return train, val, n - train - val


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder to write (created; existing files are overwritten)")
    parser.add_argument("--n", type=int, default=400, help="number of images (default 400)")
    parser.add_argument("--size", type=int, default=224, help="side of the square images in pixels (default 224)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--correlation", type=float, default=0.95, help="P(place = label) in training (default 0.95)")
    parser.add_argument("--no-segmentations", action="store_true", help="write no object masks")
    args = parser.parse_args(argv)
    if args.n < 3 or args.size < 32:
        parser.error("--n must be at least 3 and --size at least 32")
    train, val, test = split_sizes(args.n)
    write_waterbirds(args.out, train, val, test, image_size=args.size, seed=args.seed, correlation=args.correlation, segmentations=not args.no_segmentations)
    print(f"wrote {args.n} images ({train} train, {val} val, {test} test) to {args.out}")


if __name__ == "__main__":
    main()
