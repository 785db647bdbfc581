"""Where FER2013's faces sit in their 48 px frames: the mean YuNet 5 points of training faces.

``configs/facemtl_base.yaml`` warps MTFL faces onto these points (``data.align_template``) so
the shipped model sees one framing from both datasets, and the inference pipeline (which
aligns detected faces onto the mean training landmarks) reproduces it on photos.
FER2013 ships no landmarks; YuNet finds ~98 % of its faces once they are upscaled 4x.
Only *training* faces are used (the protocol keeps PublicTest/PrivateTest out of all fitting).

    python benchmarks/fer2013_template.py [--root ../shared/data/fer2013] [--n 3000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
UPSCALE = 192  # px: YuNet misses most faces at 48 px


def measure(root: Path, model: Path, n: int, seed: int) -> dict:
    """Mean / median / std of the detected points (image-normalised, pixel centres at (i + 0.5) / S)."""
    files = sorted(str(p) for p in (root / "train").glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"{root}: no train/<class>/*.jpg (the folder-per-class FER2013 export)")
    files = random.Random(seed).sample(files, min(n, len(files)))
    detector = cv2.FaceDetectorYN.create(str(model), "", (UPSCALE, UPSCALE), 0.6)
    points = []
    for path in files:
        image = cv2.resize(cv2.imread(path), (UPSCALE, UPSCALE), interpolation=cv2.INTER_CUBIC)
        _, faces = detector.detect(image)
        if faces is not None:
            best = faces[np.argmax(faces[:, 14])]
            points.append((best[4:14].reshape(5, 2) + 0.5) / UPSCALE)
    found = np.asarray(points)
    return {"faces": len(files), "detected": len(found), "mean": found.mean(0).round(4).tolist(),
            "median": np.median(found, 0).round(4).tolist(), "std": found.std(0).round(4).tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=SHARED / "fer2013")
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "face_detection_yunet_2023mar.onnx")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = measure(args.root, args.model, args.n, args.seed)
    print(f"detected {result['detected']} of {result['faces']} training faces")
    print(f"{'point':<20}{'mean x':>8}{'mean y':>8}{'std x':>7}{'std y':>7}")
    names = ("left eye", "right eye", "nose tip", "left mouth corner", "right mouth corner")
    for name, (mx, my), (sx, sy) in zip(names, result["mean"], result["std"]):
        print(f"{name:<20}{mx:>8.4f}{my:>8.4f}{sx:>7.3f}{sy:>7.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
