"""Inference speed of ``facemtl predict``: faces/s on a photo folder, frames/s on a video.

Each run goes end to end through :class:`facemtl.FaceAnalyzer` (decode -> detect ->
align -> model -> CSV rows on disk) and is broken down by stage. The same network is also
timed alone ("bare": a forward pass on random crops already in memory, same batch size,
same number of faces), which gives

- ``e2e/bare``: end-to-end throughput over bare-model throughput (how much of the work
  is the network);
- ``adds``: end-to-end time over detect + bare model time, minus 1: what decoding,
  alignment, batching, row building and CSV writing add on top of the two stages that
  cannot be avoided (target <= 20 %); ``adds-dec`` leaves decoding out as well.

Without ``--checkpoint`` a randomly initialised model with the demo's backbone and input
size is used: speed does not depend on the weights. ``--backend torch onnx`` runs the
network with PyTorch and with onnxruntime (the checkpoint exported by ``facemtl export``).

    python benchmarks/predict_speed.py [--checkpoint RUN] [--batch-size 1 8 32] [--backend torch onnx] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from facemtl import FaceAnalyzer

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def random_checkpoint(folder: Path, backbone: str, image_size: int) -> Path:
    """A checkpoint of an untrained network, saved like the trainer saves one."""
    from facemtl.config import load_config
    from facemtl.io.checkpoint import save_checkpoint
    from facemtl.labels import TASKS, LabelSpaces
    from facemtl.tasks.network import build_network

    config = load_config(None, [f"model.backbone={backbone}", f"data.image_size={image_size}"])
    spaces = LabelSpaces(au_names=tuple(f"AU{i}" for i in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26, 43)))
    net = build_network(backbone, TASKS, spaces)
    template = [[0.41, 0.44], [0.59, 0.44], [0.5, 0.55], [0.43, 0.65], [0.57, 0.65]]
    return save_checkpoint(folder / "random.safetensors", {f"net.{k}": v for k, v in net.state_dict().items()},
                           config_yaml=config.to_yaml(), label_spaces=spaces, tasks=list(TASKS),
                           preprocess={"image_size": image_size, "template_5pt": template})


def bare_forward_seconds(model, faces: int, batch: int, size: int, rounds: int = 3) -> float:
    """Median time of the analyzer's backend (numpy in, numpy out) over ``faces`` random crops in batches of ``batch``."""
    images = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    calls = -(-faces // batch)
    times = []
    model(images)
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            model(images)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(analyzer: FaceAnalyzer, source: Path, label: str, batch: int, out_dir: Path) -> dict:
    import pandas as pd

    analyzer.batch_size = batch
    analyzer.timings.clear()
    out = out_dir / f"{label}-{batch}.csv"
    start = time.perf_counter()
    analyzer.predict(source, out=out)
    wall = time.perf_counter() - start
    rows = pd.read_csv(out, usecols=["input", "frame", "success"])
    faces, frames = int(rows.success.sum()), len(rows.drop_duplicates(["input", "frame"]))
    stages = {k: analyzer.timings.get(k, 0.0) for k in ("decode", "detect", "align", "model", "rows", "write")}
    bare = bare_forward_seconds(analyzer._load(), faces, batch, analyzer.image_size)
    return {
        "backend": analyzer.backend, "source": label, "batch_size": batch, "frames": frames, "faces": faces, "wall_s": wall,
        **{f"{k}_s": v for k, v in stages.items()}, "other_s": wall - sum(stages.values()), "bare_model_s": bare,
        "faces_per_s": faces / wall, "frames_per_s": frames / wall, "bare_faces_per_s": faces / bare,
        "e2e_over_bare": (faces / wall) / (faces / bare),
        "adds_over_detect_model": wall / (stages["detect"] + bare) - 1,
        "adds_over_decode_detect_model": wall / (stages["decode"] + stages["detect"] + bare) - 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="run folder or .safetensors (default: random weights)")
    parser.add_argument("--backbone", default="tiny", help="backbone of the random model (default: tiny)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--folder", default=str(SHARED / "media" / "dlib68"), help="photo folder (faces/s)")
    parser.add_argument("--video", default=str(SHARED / "media" / "WolfgangLanger_Pexels.mp4"), help="video (frames/s)")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--detector", default="yunet")
    parser.add_argument("--threads", type=int, default=1, help="torch, onnxruntime and OpenCV threads (default: 1)")
    parser.add_argument("--backend", nargs="+", default=["torch"], choices=["torch", "onnx"],
                        help="network runtime(s) to time (onnx: the checkpoint exported to ONNX first)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # onnxruntime's intra-op threads (OnnxModel reads it)
    cv2.setNumThreads(args.threads)
    yunet = os.environ.get("FACEMTL_YUNET") or str(SHARED / "models" / "face_detection_yunet_2023mar.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or random_checkpoint(Path(tmp), args.backbone, args.image_size)
        options = {"model": yunet} if args.detector == "yunet" else {}
        results = []
        for backend in args.backend:
            model = checkpoint
            if backend == "onnx":
                from facemtl.export import export_onnx

                model = export_onnx(checkpoint, Path(tmp) / "model.onnx")
            analyzer = FaceAnalyzer(model, detector=args.detector, detector_options=options, backend=backend)
            analyzer.predict(Path(args.folder), out=Path(tmp) / "warmup.csv")  # model load, detector and allocator warm-up
            results += [run(analyzer, Path(source), label, batch, Path(tmp))
                        for label, source in (("folder", args.folder), ("video", args.video))
                        for batch in args.batch_size]
    print(f"threads={args.threads} detector={args.detector} image_size={analyzer.image_size}  (stage columns: ms per face)")
    head = (f"{'backend':<8}{'source':<7}{'batch':>6}{'frames':>7}{'faces':>6}{'faces/s':>9}{'frames/s':>9}{'decode':>8}{'detect':>8}"
            f"{'align':>7}{'model':>7}{'rows+io':>8}{'other':>7}{'bare':>7}{'e2e/bare':>9}{'adds':>7}{'adds-dec':>9}")
    print(head)
    for r in results:
        per = {k: 1000 * r[f"{k}_s"] / max(r["faces"], 1) for k in ("decode", "detect", "align", "model", "other", "bare_model")}
        io = 1000 * (r["rows_s"] + r["write_s"]) / max(r["faces"], 1)
        print(f"{r['backend']:<8}{r['source']:<7}{r['batch_size']:>6}{r['frames']:>7}{r['faces']:>6}{r['faces_per_s']:>9.1f}"
              f"{r['frames_per_s']:>9.1f}{per['decode']:>8.2f}{per['detect']:>8.2f}{per['align']:>7.2f}"
              f"{per['model']:>7.2f}{io:>8.2f}{per['other']:>7.2f}{per['bare_model']:>7.2f}{r['e2e_over_bare']:>9.3f}"
              f"{100 * r['adds_over_detect_model']:>6.0f}%{100 * r['adds_over_decode_detect_model']:>8.0f}%")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
