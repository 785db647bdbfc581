"""Command line: ``facemtl train | eval | demo | list``.

User mistakes (:class:`~facemtl.tasks.FacemtlError`) are printed as one line and exit
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from facemtl.tasks import FacemtlError


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
    _add_set(train)

    evaluate = commands.add_parser("eval", help="evaluate a checkpoint on its dataset's val and test splits")
    evaluate.add_argument("--checkpoint", required=True, help="run folder or .safetensors checkpoint")
    evaluate.add_argument("--out", help="write the metrics to this JSON file")
    _add_set(evaluate)

    demo = commands.add_parser("demo", help="train and evaluate a small model on the synthetic benchmark (CPU, ~3 min)")
    demo.add_argument("--out", help="run folder (default: runs/demo-<time>)")
    _add_set(demo)

    commands.add_parser("list", help="list built-in backbones, methods and datasets")

    data = commands.add_parser("data", help="inspect a recipe's datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    check = data_commands.add_parser(
        "check", help="load a recipe's datasets; print counts, label distributions, masked fractions and every problem"
    )
    check.add_argument("config", help="YAML recipe (see configs/)")
    check.add_argument("--no-images", action="store_true", help="do not decode every image (annotations only)")
    _add_set(check)

    from facemtl.pipeline.cli import add_predict_parser

    add_predict_parser(commands)
    return parser


def _train(config_path: str | None, out: str, overrides: list[str], resume: bool) -> dict:
    from facemtl.config import config_from_dict, load_config
    from facemtl.engine import Trainer
    from facemtl.engine.checkpoint import load_checkpoint
    from facemtl.engine.evaluate import format_metrics
    from facemtl.report import save_prediction_grid

    last = Path(out) / "checkpoints" / "last.safetensors"
    if resume and last.is_file():  # the run's own resolved config wins: a resumed run is the same run
        config = config_from_dict(load_checkpoint(last).config, overrides)
    else:
        config = load_config(config_path, overrides)
    trainer = Trainer(config, out, resume=resume)
    results = trainer.fit()
    split = "test" if "test" in results else "val"
    save_prediction_grid(trainer.method.predict, trainer.datasets[split], trainer.tasks, Path(out) / "predictions.png", trainer.device)
    print(format_metrics(results))
    print(f"run folder: {out}  (metrics.json, log.csv, predictions.png, checkpoints/best.safetensors)")
    return results


def _eval(checkpoint_path: str, overrides: list[str], out: str | None) -> dict:
    import torch

    from facemtl.config import config_from_dict
    from facemtl.data import build_datasets
    from facemtl.engine.checkpoint import load_checkpoint, load_model_state
    from facemtl.engine.evaluate import evaluate, format_metrics
    from facemtl.device import resolve_device
    from facemtl.engine.trainer import build_method
    from facemtl.methods import TrainContext

    checkpoint = load_checkpoint(checkpoint_path)
    config = config_from_dict(checkpoint.config, overrides)
    datasets = build_datasets(config.data, splits=("val", "test"))
    if datasets["val"].label_spaces != checkpoint.label_spaces:
        raise FacemtlError(f"{checkpoint.path}: its label spaces differ from dataset {config.data.name!r}'s")
    method = build_method(config, checkpoint.label_spaces, TrainContext(config.data.num_train, config.train.epochs, 1))
    load_model_state(method, checkpoint, method.net.tasks)
    device = resolve_device(config.train.device)
    method.to(device).eval()
    with torch.no_grad():
        results = {split: evaluate(method.predict, ds, method.net.tasks, device) for split, ds in datasets.items() if len(ds)}
    print(format_metrics(results))
    if out:
        Path(out).write_text(json.dumps(results, indent=2))
    return results


def _list() -> None:
    from facemtl.data import DATASETS
    from facemtl.methods import METHODS
    from facemtl.models.backbone import BACKBONES

    print("backbones:", ", ".join(BACKBONES.names()), "+ any timm model name (timm.list_models())")
    print("methods:  ", ", ".join(METHODS.names()))
    print("datasets: ", ", ".join(DATASETS.names()))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``facemtl`` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            _train(args.config, args.out, args.overrides, args.resume)
        elif args.command == "eval":
            _eval(args.checkpoint, args.overrides, args.out)
        elif args.command == "demo":
            out = args.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}"
            _train(None, out, args.overrides, resume=False)
        elif args.command == "list":
            _list()
        elif args.command == "data":
            from facemtl.data.check import run_check

            return 1 if run_check(args.config, args.overrides, images=not args.no_images) else 0
        elif args.command == "predict":
            from facemtl.pipeline.cli import run_predict

            return run_predict(args)
    except FacemtlError as err:
        print(f"facemtl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facemtl: interrupted (the last checkpoint is kept; --resume continues)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
