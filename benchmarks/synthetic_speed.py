"""Speed of the synthetic face generator (sampling + rendering + labels), one process.

Usage:
    python benchmarks/synthetic_speed.py [--num N] [--image-size S ...] [--difficulty D] [--json PATH]

Prints images/s per image size, by wall clock and by process CPU time. numpy's
element-wise kernels are single-threaded, so both are one-core figures; the CPU-time one
stays comparable on a busy machine, the wall-clock one needs an idle machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from facemtl.data.synthetic import generate_faces


def measure(num: int, size: int, difficulty: float, repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` wall time to generate ``num`` faces of side ``size``."""
    generate_faces(min(num, 64), size, seed=123, difficulty=difficulty)  # warm-up: imports, allocator
    best, best_cpu = float("inf"), float("inf")
    for r in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        faces = generate_faces(num, size, seed=r, difficulty=difficulty)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    mib = faces.images.nbytes / 2**20
    # CPU time is what one core spends; it stays meaningful on a shared, busy machine
    return {"image_size": size, "num": num, "seconds": best, "images_per_s": num / best,
            "cpu_seconds": best_cpu, "images_per_cpu_s": num / best_cpu, "images_mib": mib}


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=2048, help="faces per measurement (default 2048)")
    parser.add_argument("--image-size", type=int, nargs="+", default=[48, 64, 112], help="sides to measure")
    parser.add_argument("--difficulty", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    rows = [measure(args.num, s, args.difficulty, args.repeats) for s in args.image_size]
    print(f"{'size':>6} {'faces':>7} {'seconds':>9} {'images/s':>10} {'images/cpu-s':>13} {'MiB':>8}")
    for row in rows:
        print(f"{row['image_size']:>6} {row['num']:>7} {row['seconds']:>9.3f} {row['images_per_s']:>10.0f} "
              f"{row['images_per_cpu_s']:>13.0f} {row['images_mib']:>8.1f}")
    if args.json:
        meta = {"numpy": np.__version__, "python": platform.python_version(), "machine": platform.machine(),
                "difficulty": args.difficulty, "repeats": args.repeats}
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "results": rows}, fh, indent=2)
    return rows


if __name__ == "__main__":
    main()
