"""OpenFace 2 vs ``facemtl predict`` on one video: throughput, start-up and memory, measured from outside.

Each tool runs as its own subprocess on the same video with the same thread budget
(``--threads``: ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` in
both environments; PyTorch and onnxruntime take their intra-op threads from
``OMP_NUM_THREADS``; OpenFace's TBB loops and OpenCV use their defaults, i.e. every core).
Nothing inside either tool is timed or patched; for each run:

- ``wall``: whole-process wall time, launch to exit (start-up, model loading, decoding and exit
  included);
- ``frames/s``: distinct frames in the output CSV / wall;
- ``first row``: launch until the output CSV holds a complete first data row (header line and one
  more newline), polled every 5 ms. facemtl flushes its CSV after every batch of faces (32 by
  default), so this includes that many frames of work; OpenFace writes through a buffered
  ``std::ofstream``, so its first row shows once its buffer (8 KB, about one row) spills;
- ``1-frame``: wall time of the same command on a one-frame clip cut from the video (the first
  frame, written with OpenCV): start-up plus one frame plus exit, comparable across tools;
- ``peak RSS``: the child's ``VmHWM`` from ``/proc/<pid>/status``, polled every 5 ms until it
  exits (``ru_maxrss`` from ``os.wait4`` is kept in the JSON: Linux counts in it the pages the
  child shared with this script when it was forked, so it overstates a small child);
- ``cores``: (user + system CPU time) / wall, how many cores the process actually kept busy.

Variants: OpenFace ``FeatureExtraction`` writing its CSV only (``-2Dfp -3Dfp -pdmparams -pose
-aus -gaze``: no HOG file, aligned crops or tracked video; ``--openface-all`` adds a row with its
defaults, which write them all), facemtl with ``--backend torch`` and ``--backend onnx`` (the
checkpoint exported once with ``facemtl export``), and, when ``facemtl predict --help`` lists
``--detect-every``, each backend at k = 1 (its default, so no separate plain row) and k = 5.
Rounds are interleaved (every variant once per round) and the median of ``--repeats`` rounds is
reported; the 1-minute load average at each run's start goes into the JSON, since a shared
machine's load moves wall times far more than anything measured here (CPU seconds move less).

OpenFace is never required: without ``--openface-bin`` or ``$FACEMTL_OPENFACE`` the script
says how to build it and exits with status 0.

    python benchmarks/vs_openface.py [--openface-bin DIR] [--video VIDEO] [--threads 2] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEFAULT_VIDEO = SHARED / "data" / "media" / "WolfgangLanger_Pexels.mp4"
BUILD_SCRIPT = SHARED / "tools" / "openface2" / "build.sh"
OPENFACE_CSV_FLAGS = ["-2Dfp", "-3Dfp", "-pdmparams", "-pose", "-aus", "-gaze"]
POLL_S = 0.005


@dataclass
class Variant:
    """One row of the table: a name, a command builder's inputs and the tool it belongs to."""

    name: str
    tool: str  # "openface" or "facemtl"
    args: list[str] = field(default_factory=list)


@dataclass
class Run:
    """One measured process."""

    wall_s: float
    first_row_s: float | None
    peak_rss_gb: float  # VmHWM, polled
    ru_maxrss_gb: float  # the kernel's figure, which also counts this process's pages at fork time
    cpu_s: float
    frames: int
    faces: int
    returncode: int

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s


def find_openface(option: str | None) -> Path | None:
    """The ``FeatureExtraction`` binary from ``--openface-bin`` or ``$FACEMTL_OPENFACE`` (its folder or itself)."""
    given = option or os.environ.get("FACEMTL_OPENFACE")
    if not given:
        return None
    path = Path(given).expanduser()
    binary = path / "FeatureExtraction" if path.is_dir() else path
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def thread_env(threads: int) -> dict[str, str]:
    """The current environment with every common thread-count variable set to ``threads``."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    return env


def has_first_row(path: Path) -> bool:
    """Whether ``path`` holds a header line and a complete first data row."""
    try:
        return path.read_bytes().count(b"\n") >= 2
    except FileNotFoundError:
        return False


def vm_hwm_bytes(pid: int) -> int | None:
    """``VmHWM`` (peak resident set of the current program image) of a live process, None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run_measured(command: list[str], out_csv: Path, env: dict[str, str], cwd: Path | None, log: Path) -> Run:
    """Run ``command``; time it, poll ``out_csv`` for its first row and ``VmHWM``, then read the child's rusage."""
    peak = 0
    with log.open("wb") as stream:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=stream, stderr=subprocess.STDOUT)
        first_row = None
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            now = time.perf_counter() - start
            if first_row is None and has_first_row(out_csv):
                first_row = now
            if pid:
                break
            peak = max(peak, vm_hwm_bytes(process.pid) or 0)
            time.sleep(POLL_S)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
    frames, faces = count_rows(out_csv)
    return Run(wall_s=now, first_row_s=first_row, peak_rss_gb=peak / 1024**3, ru_maxrss_gb=usage.ru_maxrss / 1024**2,
               cpu_s=usage.ru_utime + usage.ru_stime, frames=frames, faces=faces, returncode=process.returncode)


def count_rows(path: Path) -> tuple[int, int]:
    """Distinct frames and successful face rows of an OpenFace or facemtl CSV (``", "`` or ``","`` separated)."""
    if not path.is_file():
        return 0, 0
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle, skipinitialspace=True))
    frames = {(row.get("input", ""), row["frame"]) for row in rows}
    faces = sum(row["success"].strip() == "1" for row in rows)
    return len(frames), faces


def openface_command(binary: Path, video: Path, out_dir: Path, all_outputs: bool) -> list[str]:
    """FeatureExtraction on ``video`` with the CLNF model (run from the bin folder)."""
    flags = [] if all_outputs else OPENFACE_CSV_FLAGS
    return [str(binary), "-f", str(video), "-out_dir", str(out_dir), "-mloc", "model/main_clnf_general.txt", *flags]


def facemtl_command(video: Path, out_csv: Path, args: list[str]) -> list[str]:
    """``facemtl predict`` on ``video`` through the same interpreter."""
    return [sys.executable, "-m", "facemtl", "predict", str(video), "--out", str(out_csv), *args]


def measure(variant: Variant, video: Path, work: Path, openface: Path | None, threads: int) -> Run:
    """One run of ``variant`` on ``video`` in a fresh folder under ``work``."""
    folder = Path(tempfile.mkdtemp(dir=work))
    env = thread_env(threads)
    if variant.tool == "openface":
        assert openface is not None
        command = openface_command(openface, video, folder, "--all" in variant.args)
        out_csv, cwd = folder / f"{video.stem}.csv", openface.parent
    else:
        out_csv, cwd = folder / "rows.csv", None
        command = facemtl_command(video, out_csv, variant.args)
    run = run_measured(command, out_csv, env, cwd, folder / "log.txt")
    if run.returncode != 0:
        tail = (folder / "log.txt").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{variant.name} failed ({run.returncode}): {' '.join(command)}\n{tail}")
    shutil.rmtree(folder)
    return run


def one_frame_clip(video: Path, folder: Path) -> Path:
    """A one-frame ``.mp4`` holding ``video``'s first frame, same size and rate (OpenCV in a
    child process, so this script stays small: every child's ``ru_maxrss`` starts from it)."""
    clip = folder / f"{video.stem}_1frame.mp4"
    code = (
        "import sys, cv2\n"
        "capture = cv2.VideoCapture(sys.argv[1]); ok, image = capture.read()\n"
        "if not ok: sys.exit(f'cannot read a frame of {sys.argv[1]}')\n"
        "fps = capture.get(cv2.CAP_PROP_FPS) or 25.0\n"
        "size = (image.shape[1], image.shape[0])\n"
        "writer = cv2.VideoWriter(sys.argv[2], cv2.VideoWriter_fourcc(*'mp4v'), fps, size)\n"
        "writer.write(image); writer.release()\n"
    )
    subprocess.run([sys.executable, "-c", code, str(video), str(clip)], check=True)
    return clip


def output_of(command: list[str]) -> str:
    """Standard output of ``command`` (empty when it fails)."""
    return subprocess.run(command, check=False, capture_output=True, text=True).stdout.strip()


def has_detect_every() -> bool:
    """Whether this facemtl's ``predict`` takes ``--detect-every``."""
    return "--detect-every" in output_of([sys.executable, "-m", "facemtl", "predict", "--help"])


def export_onnx(checkpoint: str, path: Path) -> Path:
    """``facemtl export`` the checkpoint once (the CLI, as a user would)."""
    subprocess.run([sys.executable, "-m", "facemtl", "export", "--checkpoint", checkpoint, "--onnx", str(path)],
                   check=True, capture_output=True)
    return path


def variants(args: argparse.Namespace, onnx: Path, openface: Path) -> list[Variant]:
    """OpenFace, then facemtl per backend (and per ``--detect-every`` k when the option exists)."""
    rows = [Variant("OpenFace 2 (CSV only)", "openface")]
    if args.openface_all:
        rows.append(Variant("OpenFace 2 (all outputs)", "openface", ["--all"]))
    model = {"torch": ["--checkpoint", args.checkpoint, "--backend", "torch"],
             "onnx": ["--checkpoint", str(onnx), "--backend", "onnx"]}
    ks: list[int | None] = [None]
    if args.detect_every and has_detect_every():
        ks = list(args.detect_every)  # k = 1 is predict's default: no separate plain row
    for backend in args.backend:
        for k in ks:
            extra = [] if k is None else ["--detect-every", str(k)]
            name = f"facemtl {backend}" + ("" if k is None else f" detect-every {k}")
            rows.append(Variant(name, "facemtl", model[backend] + extra))
    return rows


def median_run(runs: list[Run]) -> dict:
    """Median of every measured field over repeats (first row: over the runs that saw one)."""
    firsts = [r.first_row_s for r in runs if r.first_row_s is not None]
    return {
        "frames": runs[0].frames, "faces": runs[0].faces,
        "wall_s": statistics.median(r.wall_s for r in runs),
        "frames_per_s": statistics.median(r.frames_per_s for r in runs),
        "first_row_s": statistics.median(firsts) if firsts else None,
        "peak_rss_gb": statistics.median(r.peak_rss_gb for r in runs),
        "cpu_s": statistics.median(r.cpu_s for r in runs),
        "cores": statistics.median(r.cpu_s / r.wall_s for r in runs),
    }


def versions(openface: Path) -> dict:
    """Versions of everything measured, the commit and the machine."""
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "-"

    commit = output_of(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    where = output_of([sys.executable, "-c", "import facemtl; print(facemtl.__file__)"])
    return {
        "facemtl": version("facemtl"), "commit": commit, "facemtl_imported_from": where, "torch": version("torch"),
        "onnxruntime": version("onnxruntime"), "opencv": version("opencv-python-headless"),
        "python": platform.python_version(), "openface": str(openface), "cpus": os.cpu_count(),
    }


def print_table(results: list[dict], threads: int) -> None:
    """One row per tool / variant; ratio against the first OpenFace row's frames/s."""
    reference = next(r["frames_per_s"] for r in results if r["tool"] == "openface")
    print(f"threads={threads}  (medians; first row: CSV polled; 1-frame: whole run on a one-frame clip)")
    print(f"{'tool / variant':<34}{'frames':>7}{'wall s':>8}{'frames/s':>9}{'vs OF':>7}{'first row s':>12}"
          f"{'1-frame s':>10}{'peak RSS GB':>12}{'CPU s':>7}{'cores':>6}")
    for r in results:
        first = "-" if r["first_row_s"] is None else f"{r['first_row_s']:.2f}"
        print(f"{r['name']:<34}{r['frames']:>7}{r['wall_s']:>8.2f}{r['frames_per_s']:>9.1f}"
              f"{r['frames_per_s'] / reference:>6.2f}x{first:>12}{r['one_frame_s']:>10.2f}"
              f"{r['peak_rss_gb']:>12.2f}{r['cpu_s']:>7.1f}{r['cores']:>6.2f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openface-bin", help="OpenFace 2 bin folder or its FeatureExtraction "
                        "(default: $FACEMTL_OPENFACE)")
    parser.add_argument("--video", default=str(DEFAULT_VIDEO),
                        help="video to analyse (default: the 472-frame Pexels clip)")
    parser.add_argument("--threads", type=int, default=2, help="OMP/MKL/OpenBLAS threads for both tools (default: 2)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the median is reported (default: 3)")
    parser.add_argument("--checkpoint", default="facemtl_base", help="facemtl checkpoint (default: the shipped one)")
    parser.add_argument("--backend", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx"])
    parser.add_argument("--detect-every", type=int, nargs="*", default=[1, 5], metavar="K",
                        help="run facemtl at each --detect-every K when predict has that option (default: 1 5)")
    parser.add_argument("--openface-all", action="store_true",
                        help="also run OpenFace with its default outputs (HOG, aligned crops, tracked video)")
    parser.add_argument("--json", help="write the results to this file")
    return parser.parse_args()


def run_rounds(args: argparse.Namespace, openface: Path, video: Path, work: Path) -> list[dict]:
    """Every variant once per round on the video and once on the one-frame clip; per-variant medians."""
    onnx = export_onnx(args.checkpoint, work / "model.onnx") if "onnx" in args.backend else work / "none.onnx"
    clip = one_frame_clip(video, work)
    table = variants(args, onnx, openface)
    runs: dict[str, list[Run]] = {v.name: [] for v in table}
    one_frame: dict[str, list[Run]] = {v.name: [] for v in table}
    loads: dict[str, list[float]] = {v.name: [] for v in table}
    for round_ in range(args.repeats):
        for variant in table:
            loads[variant.name].append(os.getloadavg()[0])
            runs[variant.name].append(measure(variant, video, work, openface, args.threads))
            one_frame[variant.name].append(measure(variant, clip, work, openface, args.threads))
            last = runs[variant.name][-1]
            print(f"round {round_ + 1}/{args.repeats} {variant.name}: {last.wall_s:.2f} s, "
                  f"{last.frames_per_s:.1f} frames/s, load {loads[variant.name][-1]:.2f}", file=sys.stderr, flush=True)
    return [{"name": v.name, "tool": v.tool, "args": v.args, **median_run(runs[v.name]),
             "one_frame_s": statistics.median(r.wall_s for r in one_frame[v.name]),
             "load_average_at_start": loads[v.name],
             "runs": [asdict(r) for r in runs[v.name]], "one_frame_runs": [asdict(r) for r in one_frame[v.name]]}
            for v in table]


def main() -> int:
    args = parse_args()
    openface = find_openface(args.openface_bin)
    if openface is None:
        print("OpenFace 2 not found: build it with\n"
              f"    bash {BUILD_SCRIPT} [DEST]      # ~5 min on 2 cores, needs apt; prints DEST/openface2/build/bin\n"
              "then pass --openface-bin DEST/openface2/build/bin or set FACEMTL_OPENFACE to it.")
        return 0
    video = Path(args.video).resolve()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        results = run_rounds(args, openface, video, Path(tmp))
    print_table(results, args.threads)
    load = {"before": load_before, "after": os.getloadavg()}
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load['after'][0]:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        report = {"video": str(video), "threads": args.threads, "repeats": args.repeats,
                  "date": time.strftime("%Y-%m-%d %H:%M"), "versions": versions(openface),
                  "load_average": load, "results": results}
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
