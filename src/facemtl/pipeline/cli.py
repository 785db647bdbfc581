"""``facemtl predict``: the command-line face of :class:`~facemtl.pipeline.analyzer.FaceAnalyzer`.

Kept free of heavy imports at module level: ``facemtl.cli`` builds every subparser on
each call, and ``facemtl train`` should not pay for OpenCV.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_predict_parser(commands: Any) -> None:
    """Register the ``predict`` subcommand on ``facemtl``'s subparsers."""
    parser = commands.add_parser(
        "predict", help="detect, align and analyse faces in images, folders and videos; write a CSV",
        description="One CSV row per face per frame (schema: README, 'Inference'). Inputs that cannot be read "
                    "become success=0 rows with a warning; processing continues.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image, video or folder (searched recursively)")
    parser.add_argument("--checkpoint", help="run folder, .safetensors checkpoint or .onnx file from `facemtl export` "
                             "(default: $FACEMTL_CHECKPOINT, else the shipped model)")
    parser.add_argument("--backend", choices=["torch", "onnx"],
                        help="run the network with PyTorch or onnxruntime (needs facemtl[onnx], not torch; "
                             "the model must be a .onnx file); default: onnx for a .onnx file, else torch")
    parser.add_argument("--out", help="CSV file to write (default: standard output)")
    parser.add_argument("--every", type=int, default=1, metavar="N", help="analyse every N-th video frame")
    parser.add_argument("--annotate", metavar="DIR", help="write pictures / videos with boxes, landmarks and expression")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=32, help="faces per forward pass (default: 32)")
    parser.add_argument("--detector", default="auto", choices=["auto", "yunet", "haar"],
                        help="face detector: YuNet (model from $FACEMTL_YUNET, the cache or one download), "
                             "the bundled Haar cascade, or auto = YuNet else Haar (default)")
    parser.add_argument("--no-detect", action="store_true", help="each input image is already one cropped face")
    parser.add_argument("--tta", default="none", choices=["none", "flip"],
                        help="test-time augmentation: flip = also analyse each face mirrored and average "
                             "(landmarks and pose mirrored back; twice the model time)")


def run_predict(args: argparse.Namespace) -> int:
    """Run ``facemtl predict``; returns the exit status (user errors raise FacemtlError)."""
    from facemtl.pipeline.analyzer import (
        FaceAnalyzer,  # OpenCV and the detector: loaded when predicting, not for --help
    )
    from facemtl.pipeline.writers import CsvWriter

    analyzer = FaceAnalyzer(args.checkpoint, detector="none" if args.no_detect else args.detector,
                            device=args.device, batch_size=args.batch_size, backend=args.backend,
                            tta=args.tta)
    # warnings (unreadable inputs...) print as one line each: facemtl.cli.main formats them
    batches = analyzer.iter_rows(args.inputs, every=args.every, annotate=args.annotate, progress=True)
    writer = CsvWriter(args.out or sys.stdout, analyzer.columns)
    faces = 0
    try:
        for batch in batches:
            writer.write(batch)
            faces += sum(row["success"] for row in batch)
    except KeyboardInterrupt:
        print(f"facemtl: interrupted; the {writer.rows} rows already written are kept", file=sys.stderr)
        return 130
    finally:
        writer.close()
    where = args.out or "standard output"
    print(f"facemtl: {writer.rows} rows ({faces} faces) written to {where}", file=sys.stderr)
    if args.annotate:
        print(f"facemtl: annotated pictures in {args.annotate}", file=sys.stderr)
    return 0
