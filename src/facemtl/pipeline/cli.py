"""``facemtl predict``: the command-line face of :class:`~facemtl.pipeline.analyzer.FaceAnalyzer`.

Kept free of heavy imports at module level: ``facemtl.cli`` builds every subparser on
each call, and ``facemtl train`` should not pay for OpenCV.

Everything a user can get wrong on the command line (a mistyped input, an ``--out`` or
``--annotate`` that cannot be written) is checked before the model loads, so it costs
no wait and leaves no half-written file behind.

Exit status: 0 when the run finished and at least one input was read (inputs that could
not be read are ``success = 0`` rows and warnings); 1 when every input failed (the rows
are still written); 2 for a user error caught before any work (one ``facemtl: error:``
line); 130 when interrupted; 141 when standard output was closed early (``| head``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

#: Exit status of a run in which no input could be read (every row has ``error`` set).
ALL_INPUTS_FAILED = 1

_EPILOG = """exit status: 0 done (unreadable inputs are success=0 rows with a warning); 1 every input failed
(their success=0 rows are still written); 2 a user error, one line, no CSV written (a bad option or
model; an input path that does not exist or an --out / --annotate that cannot be written is found
before anything loads); 130 interrupted; 141 standard output closed early (| head)"""


def add_predict_parser(commands: Any) -> None:
    """Register the ``predict`` subcommand on ``facemtl``'s subparsers."""
    parser = commands.add_parser(
        "predict", help="detect, align and analyse faces in images, folders and videos; write a CSV",
        description="One CSV row per face per frame (schema: README, 'Inference'). Inputs that cannot be read "
                    "become success=0 rows with a warning; processing continues.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image, video or folder (searched recursively)")
    parser.add_argument("--checkpoint", help="run folder, .safetensors checkpoint or .onnx file from `facemtl export` "
                             "(default: $FACEMTL_CHECKPOINT, else the shipped model)")
    parser.add_argument("--backend", choices=["torch", "onnx"],
                        help="run the network with PyTorch or onnxruntime (needs facemtl[onnx], not torch; "
                             "the model must be a .onnx file); default: onnx for a .onnx file, else torch")
    parser.add_argument("--out", help="CSV file to write (default: standard output)")
    parser.add_argument("--every", type=int, default=1, metavar="N", help="analyse every N-th video frame")
    parser.add_argument("--detect-every", type=int, default=1, metavar="K",
                        help="video: detect faces on every K-th analysed frame, follow them in between from the "
                             "predicted landmarks (default 1: detect on every frame)")
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


def _existing_ancestor(path: Path) -> Path:
    """``path`` itself or its nearest ancestor that exists (``.`` for a relative path's top)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _probe_folder(folder: Path, option: str, target: Path) -> None:
    """Create and remove a scratch file in ``folder`` (an existing folder), or say why it cannot be.

    Asking the file system is the only reliable test: permission bits do not bind root,
    and read-only mounts or ``/proc`` refuse what ``os.access`` allows.
    """
    from facemtl.errors import FacemtlError

    try:
        handle, scratch = tempfile.mkstemp(dir=folder, prefix=".facemtl-write-test-")
        os.close(handle)
        os.unlink(scratch)
    except OSError as err:
        raise FacemtlError(f"{option} {target}: cannot write in {folder} ({err.strerror or err})") from None


def _check_creatable(path: Path, option: str, folder: bool) -> None:
    """``path`` (a file, or a folder when ``folder``) can be written, its missing parent folders created."""
    from facemtl.errors import FacemtlError

    if path.exists():
        if folder != path.is_dir():
            kind = "is not a folder" if folder else "is a folder; give the path of a .csv file"
            raise FacemtlError(f"{option} {path}: {kind}")
        if folder:
            _probe_folder(path, option, path)
        else:
            try:
                with open(path, "ab"):  # appends nothing; the run truncates it only once rows are ready
                    pass
            except OSError as err:
                raise FacemtlError(f"{option} {path}: cannot write it ({err.strerror or err})") from None
        return
    base = _existing_ancestor(path.parent)
    if not base.is_dir():
        raise FacemtlError(f"{option} {path}: {base} is a file, not a folder")
    _probe_folder(base, option, path)


def check_arguments(args: argparse.Namespace) -> None:
    """The command line's own mistakes, found before anything loads (raises :class:`FacemtlError`)."""
    from facemtl.errors import FacemtlError

    missing = [item for item in args.inputs if not Path(item).exists()]
    if missing:
        raise FacemtlError(f"no such file or folder: {', '.join(missing)}")
    if args.every < 1:
        raise FacemtlError(f"--every must be >= 1, got {args.every}")
    if args.batch_size < 1:
        raise FacemtlError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.out:
        _check_creatable(Path(args.out), "--out", folder=False)
    if args.annotate:
        _check_creatable(Path(args.annotate), "--annotate", folder=True)


def _silence_stdout() -> None:
    """Point standard output at the null device, so the interpreter's final flush into the
    closed pipe does not print a second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file descriptor (e.g. captured by a test)
        pass


def run_predict(args: argparse.Namespace) -> int:
    """Run ``facemtl predict``; returns the exit status (user errors raise FacemtlError)."""
    check_arguments(args)
    from facemtl.errors import FacemtlError
    from facemtl.pipeline.analyzer import (
        FaceAnalyzer,  # OpenCV and the detector: loaded when predicting, not for --help
    )
    from facemtl.pipeline.writers import CsvWriter

    analyzer = FaceAnalyzer(args.checkpoint, detector="none" if args.no_detect else args.detector,
                            device=args.device, batch_size=args.batch_size, backend=args.backend,
                            tta=args.tta, detect_every=args.detect_every)
    # warnings (unreadable inputs...) print as one line each: facemtl.cli.main formats them
    batches = analyzer.iter_rows(args.inputs, every=args.every, annotate=args.annotate, progress=True)
    writer: CsvWriter | None = None  # the CSV is created with the first rows: an early failure leaves none
    faces = 0
    read, failed = set(), set()  # inputs with a readable frame / with an error row
    try:
        for batch in batches:
            if writer is None:
                try:
                    writer = CsvWriter(args.out or sys.stdout, analyzer.columns)
                except OSError as err:
                    raise FacemtlError(f"--out {args.out}: cannot write it ({err.strerror or err})") from None
            writer.write(batch)
            for row in batch:
                faces += row["success"]
                (failed if row.get("error") else read).add(row["input"])
    except KeyboardInterrupt:
        batches.close()  # the progress bar's last line comes before this one
        print(f"facemtl: interrupted; the {writer.rows if writer else 0} rows already written are kept",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # `facemtl predict ... | head`: the reader has all it wants
        if args.out:
            raise
        batches.close()
        _silence_stdout()
        print("facemtl: standard output was closed; stopped", file=sys.stderr)
        return 141  # 128 + SIGPIPE, as a shell reports a program stopped by a closed pipe
    finally:
        if writer is not None:
            writer.close()
    rows = writer.rows if writer else 0
    where = args.out or "standard output"
    unread = len(failed - read)
    note = f"; {unread} of {len(failed | read)} inputs could not be read" if unread else ""
    print(f"facemtl: {rows} rows ({faces} faces) written to {where}{note}", file=sys.stderr)
    if args.annotate:
        print(f"facemtl: annotated pictures in {args.annotate}", file=sys.stderr)
    if not read:
        print(f"facemtl: every input failed (see the warnings above); exit status {ALL_INPUTS_FAILED}",
              file=sys.stderr)
        return ALL_INPUTS_FAILED
    return 0
