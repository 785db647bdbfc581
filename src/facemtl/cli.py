"""Command line: ``facemtl train | eval | distill | demo | report | list``.

User mistakes (:class:`~facemtl.errors.FacemtlError`) are printed as one line and exit
with status 2; anything else is a bug and keeps its traceback.

Each command imports what it needs inside its own function, on purpose: torch and the
training stack load only for the commands that use them, so ``facemtl --help`` and argument
errors answer at once and ``predict --backend onnx`` never imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from facemtl.errors import FacemtlError

#: What an inference-only (ONNX) install lacks; the other commands need it.
TRAINING_STACK = frozenset({"torch", "torchvision", "timm", "safetensors", "matplotlib"})


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.epochs=5 (repeatable)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facemtl", description="Multi-task facial behaviour analysis.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model from a YAML recipe")
    train.add_argument("config", help="YAML recipe (see configs/)")
    train.add_argument("--out", required=True, help="run folder to write")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument(
        "--nproc", type=int, default=1, metavar="N",
        help="train in N processes with DDP (re-launched through torchrun; CUDA: one GPU each, CPU: gloo)",
    )
    _add_set(train)

    evaluate = commands.add_parser("eval", help="evaluate a checkpoint on its dataset's val and test splits")
    evaluate.add_argument("--checkpoint", required=True, help="run folder, .safetensors checkpoint or ensemble .json")
    evaluate.add_argument("--out", help="write the metrics to this JSON file")
    _add_set(evaluate)

    distill = commands.add_parser("distill", help="train N students from a teacher (Deng et al.) and write their ensemble")
    distill.add_argument("config", help="student YAML recipe (method.name and method.teacher are set for you)")
    distill.add_argument("--teacher", required=True, help="teacher run folder or .safetensors checkpoint")
    distill.add_argument("--students", type=int, default=5, help="number of students, seeds train.seed + i (default 5)")
    distill.add_argument("--out", required=True, help="folder for student<i>/ runs, ensemble.json and metrics.json")
    distill.add_argument("--va-mode", choices=("mean", "mode"), default="mean", help="ensemble VA: mean expectation or mode of bins")
    _add_set(distill)

    demo = commands.add_parser("demo", help="train and evaluate a small model on the synthetic benchmark (CPU, ~3 min)")
    demo.add_argument("--out", help="run folder (default: runs/demo-<time>)")
    _add_set(demo)

    report = commands.add_parser("report", help="write an HTML page with plots of a finished run (RUN_DIR/report/report.html) or a checkpoint")
    report.add_argument("run_dir", metavar="RUN_DIR",
                        help="run folder (facemtl train --out), or a checkpoint file or facemtl_base (evaluated first)")
    report.add_argument("--out", help="folder to write (default: RUN_DIR/report; a checkpoint's: NAME-report/)")
    report.add_argument("--max-faces", type=int, default=2000, help="predict at most this many faces again (default 2000)")
    report.add_argument("--no-predictions", action="store_true", help="skip the plots that need the run's dataset")
    report.add_argument("--device", default="cpu", help="where the checkpoint runs: cpu, cuda, cuda:N or auto")
    _add_set(report)

    commands.add_parser("list", help="list built-in backbones, methods and datasets")

    data = commands.add_parser("data", help="inspect a recipe's datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    check = data_commands.add_parser(
        "check", help="load a recipe's datasets; print counts, label distributions, masked fractions and every problem"
    )
    check.add_argument("config", help="YAML recipe (see configs/)")
    check.add_argument("--no-images", action="store_true", help="do not decode every image (annotations only)")
    _add_set(check)

    export = commands.add_parser("export", help="export a checkpoint to ONNX (dynamic batch, every head, its metadata)")
    export.add_argument("--checkpoint", required=True, help="run folder or .safetensors checkpoint")
    export.add_argument("--onnx", required=True, metavar="OUT", help=".onnx file to write")
    export.add_argument("--opset", type=int, help="ONNX opset (default: torch's)")

    from facemtl.pipeline.cli import add_predict_parser

    add_predict_parser(commands)
    return parser


def _train(config_path: str | None, out: str, overrides: list[str], resume: bool) -> dict:
    from facemtl import distributed
    from facemtl.config import config_from_dict, load_config
    from facemtl.engine import Trainer
    from facemtl.engine.evaluate import format_metrics
    from facemtl.io.checkpoint import load_checkpoint
    from facemtl.report import save_prediction_grid

    last = Path(out) / "checkpoints" / "last.safetensors"
    if resume and last.is_file():  # the run's own resolved config wins: a resumed run is the same run
        config = config_from_dict(load_checkpoint(last).config, overrides)
    else:
        config = load_config(config_path, overrides)
    trainer = Trainer(config, out, resume=resume)
    main = distributed.is_main()
    finished = False
    try:
        results = trainer.fit()
        finished = True
    finally:
        trainer.close(finished)
    if not main:  # under torchrun: rank 0 writes and reports
        return results
    split = "test" if "test" in results else "val"
    save_prediction_grid(trainer.method.predict, trainer.datasets[split], trainer.tasks, Path(out) / "predictions.png", trainer.device)
    print(format_metrics(results))
    print(f"run folder: {out}  (metrics.json, log.csv, predictions.png, checkpoints/best.safetensors)")
    return results


def _launch(args: argparse.Namespace) -> int:
    """Re-run this ``facemtl train`` in ``args.nproc`` processes through torchrun (``torch.distributed.run``)."""
    import os
    import subprocess

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise FacemtlError("--nproc: this process was already started by torchrun; drop --nproc")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
        "-m", "facemtl", "train", args.config, "--out", args.out, *(["--resume"] if args.resume else []),
        *[part for override in args.overrides for part in ("--set", override)],
    ]
    return subprocess.call(command)


def _eval(checkpoint_path: str, overrides: list[str], out: str | None) -> dict:
    from facemtl.engine.checkpoint_eval import evaluate_checkpoint
    from facemtl.engine.ensemble import evaluate_ensemble
    from facemtl.engine.evaluate import format_metrics

    if checkpoint_path.endswith(".json") or (Path(checkpoint_path) / "ensemble.json").is_file():
        results = evaluate_ensemble(checkpoint_path, overrides)
    else:
        results, _ = evaluate_checkpoint(checkpoint_path, overrides)
    print(format_metrics(results))
    if out:
        Path(out).write_text(json.dumps(results, indent=2))
    return results


def _export(checkpoint: str, out: str, opset: int | None) -> None:
    from facemtl.export import export_onnx, parity

    path = export_onnx(checkpoint, out, opset)
    diff = parity(checkpoint, path)  # a wrong export is caught here, not by the user's first predictions
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); onnxruntime vs PyTorch max abs diff {diff:.1e} (fp32)")
    if diff > 1e-4:
        raise FacemtlError(f"{path}: onnxruntime and PyTorch outputs differ by {diff:.1e} (> 1e-4); please report it")


def _report(run_dir: str, out: str | None = None, max_faces: int = 2000, predictions: bool = True,
            device: str = "cpu", overrides: list[str] | None = None) -> None:
    from facemtl.report.html import write_report

    if max_faces < 1:
        raise FacemtlError(f"--max-faces={max_faces}; expected a positive number of faces")
    path = write_report(run_dir, out, max_faces, predictions, device, overrides or [])
    print(f"report: {path}")


def _list() -> None:
    from facemtl.registry import BACKBONES, DATASETS, METHODS, TASK_SPECS

    print("tasks:    ", ", ".join(f"{name} ({TASK_SPECS.get(name).title.lower()})" for name in TASK_SPECS.names()))
    print("backbones:", ", ".join(BACKBONES.names()), "+ any timm model name (timm.list_models())")
    print("methods:  ", ", ".join(METHODS.names()))
    print("datasets: ", ", ".join(DATASETS.names()))


def _warn_one_line(message: object, category: type, filename: str, lineno: int, file: object = None,
                   line: object = None) -> None:
    """Warnings as one ``facemtl: warning:`` line (no source line), above any progress bar."""
    from tqdm import tqdm

    tqdm.write(f"facemtl: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``facemtl`` console script."""
    args = _parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _warn_one_line
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command == "train" and args.nproc > 1:
            return _launch(args)
        if args.command == "train":
            if args.nproc < 1:
                raise FacemtlError(f"--nproc {args.nproc}: expected at least 1 process")
            _train(args.config, args.out, args.overrides, args.resume)
        elif args.command == "eval":
            _eval(args.checkpoint, args.overrides, args.out)
        elif args.command == "demo":
            out = args.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}"
            _train(None, out, args.overrides, resume=False)
            _report(out)
        elif args.command == "report":
            _report(args.run_dir, args.out, args.max_faces, not args.no_predictions, args.device, args.overrides)
        elif args.command == "list":
            _list()
        elif args.command == "distill":
            from facemtl.engine.ensemble import run_distill

            run_distill(args.config, args.teacher, args.students, args.out, args.overrides, args.va_mode)
        elif args.command == "export":
            _export(args.checkpoint, args.onnx, args.opset)
        elif args.command == "data":
            from facemtl.data.check import run_check

            return 1 if run_check(args.config, args.overrides, images=not args.no_images) else 0
        elif args.command == "predict":
            from facemtl.pipeline.cli import run_predict

            return run_predict(args)
    except FacemtlError as err:
        print(f"facemtl: error: {err}", file=sys.stderr)
        return 2
    except ImportError as err:
        missing = (err.name or "").split(".")[0]
        if missing not in TRAINING_STACK:  # a bug, not an inference-only install: keep the traceback
            raise
        print(f"facemtl: error: facemtl {args.command} needs {missing}, which is not installed (an inference-only "
              f"install runs `facemtl predict` on .onnx models); install the full package: pip install facemtl",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facemtl: interrupted (the last checkpoint is kept; --resume continues)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
