"""The shipped model's table (model card): FER2013 expression and MTFL landmarks + attributes.

Protocols of ``../shared/data/README.md``:

- FER2013: accuracy and macro-F1 on ``PrivateTest`` (reported) and ``PublicTest`` (the
  selection split), on the released 48 px faces; ``+flip`` averages the softmax of each
  face and its mirror image (the pipeline's ``--tta flip``, reported separately);
- MTFL ``testing.txt`` (AFLW faces): NME normalised by the eye-centre distance (MTFL has no
  eye corners), failure rate at 10 %, accuracy per attribute, twice:
  ``aligned``: faces warped onto the template with their ground-truth 5 points, as in
  training (the crop knows where the face is: optimistic);
  ``detected``: end to end through :class:`facemtl.FaceAnalyzer` on the original images
  (YuNet detection -> alignment -> model), the detection nearest the annotated face; faces
  YuNet misses are counted and left out of the errors. The detector's own 5 points are
  scored too, as a reference for what the landmark head adds; ``detected+flip`` is the same
  with ``FaceAnalyzer(tta="flip")`` (``facemtl predict --tta flip``).

    python benchmarks/real_model.py                                  # the shipped model
    python benchmarks/real_model.py --checkpoint runs/a runs/b --json table.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facemtl.config import DataConfig, config_from_dict
from facemtl.data import build_datasets
from facemtl.data.mix import source_configs
from facemtl.engine.evaluate import collect_predictions
from facemtl.metrics import attribute_metrics, expression_metrics, landmark_metrics
from facemtl.models import MultiTaskNet
from facemtl.tasks.network import load_network
from facemtl.pipeline.backends import TorchModel, predict_faces

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def source_config(checkpoint: Any, name: str, root: Path) -> DataConfig:
    """The checkpoint's data settings for dataset ``name`` (a mix source inherits the mix's keys), at ``root``."""
    data = config_from_dict(checkpoint.config).data
    if data.name == "mix":
        data = next((source for source in source_configs(data)[0] if source.name == name), data)
    return dataclasses.replace(data, name=name, root=str(root), options=data.options if data.name == name else None)


def flip_predictor(path: str | Path):
    """Expression probabilities with the pipeline's own flip TTA (``facemtl predict --tta flip``)."""
    model = TorchModel(path)

    def predict(images: torch.Tensor) -> dict[str, Any]:
        return {"expr": torch.from_numpy(predict_faces(model, images.numpy(), "flip")["expr"])}
    return predict


def fer2013(net: MultiTaskNet, path: str | Path, checkpoint: Any, root: Path) -> dict[str, Any]:
    """Accuracy / macro-F1 on PublicTest (val) and PrivateTest (test), plain and with flip TTA."""
    config = source_config(checkpoint, "fer2013", root)
    splits = build_datasets(config, ("val", "test"))
    classes = checkpoint.label_spaces.expr_classes
    out = {}
    for tta, predict in (("", lambda x: net(x)), ("+flip", flip_predictor(path))):
        for split, name in (("val", "PublicTest"), ("test", "PrivateTest")):
            with torch.no_grad():
                found = collect_predictions(predict, splits[split], ("expr",), torch.device("cpu"))["expr"]
            metrics = expression_metrics(found["label"][found["mask"]], found["pred"][found["mask"]], classes)
            out[f"{name}{tta}"] = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                                   "faces": int(found["mask"].sum())}
    return out


def mtfl_aligned(net: MultiTaskNet, checkpoint: Any, root: Path) -> dict[str, Any]:
    """testing.txt faces warped onto the template with their ground-truth points."""
    config = source_config(checkpoint, "mtfl", root)
    test = build_datasets(config, ("test",))["test"]
    with torch.no_grad():
        found = collect_predictions(lambda x: net(x), test, ("lmk", "attr"), torch.device("cpu"))
    lmk = landmark_metrics(found["lmk"]["pred"], found["lmk"]["label"])
    attrs = attribute_metrics(found["attr"]["label"], found["attr"]["pred"], list(test.label_spaces.attributes),
                              mask=found["attr"]["mask"])
    return {"faces": len(test), "nme": lmk["nme"], "failure_rate": lmk["failure_rate"],
            "attr": {name: value["accuracy"] for name, value in attrs.items()}}


def mtfl_detected(path: str | Path, checkpoint: Any, root: Path, tta: str = "none") -> dict[str, Any]:
    """testing.txt end to end: FaceAnalyzer on the original images, nearest detection per face."""
    from facemtl import FaceAnalyzer
    from facemtl.data.formats.mtfl import read_file

    _, faces = read_file(root / "testing.txt", root)
    analyzer = FaceAnalyzer(path, detector="yunet", tta=tta)
    rows = analyzer.predict([str(root / face.path) for face in faces])
    spaces = checkpoint.label_spaces
    pred, detector_points, true, attr_pred, attr_true = [], [], [], [], []
    for i, face in enumerate(faces):
        found = rows[(rows["input"] == str(root / face.path)) & (rows["success"] == 1)]
        if found.empty:
            continue
        centre = face.points.mean(0)
        boxes = found[["face_x", "face_y", "face_w", "face_h"]].to_numpy(np.float64)
        nearest = found.iloc[int(np.argmin(np.linalg.norm(boxes[:, :2] + boxes[:, 2:] / 2 - centre, axis=1)))]
        points = np.stack([nearest[[f"lmk5_x_{k}" for k in range(5)]], nearest[[f"lmk5_y_{k}" for k in range(5)]]], 1)
        pred.append(points.astype(np.float64))
        detector_points.append(np.stack([nearest[[f"det_x_{k}" for k in range(5)]],
                                         nearest[[f"det_y_{k}" for k in range(5)]]], 1).astype(np.float64))
        true.append(face.points)
        attr_true.append([face.attributes[name] for name in spaces.attributes])
        attr_pred.append([spaces.attributes[name].index(nearest[f"attr_{name}"]) for name in spaces.attributes])
    # Several MTFL lines may list one image file: rows hold every face of that file once.
    lmk = landmark_metrics(np.asarray(pred), np.asarray(true))
    attr_pred, attr_true = np.asarray(attr_pred), np.asarray(attr_true)
    yunet = landmark_metrics(np.asarray(detector_points), np.asarray(true))
    return {"faces": len(faces), "detected": len(pred), "nme": lmk["nme"], "failure_rate": lmk["failure_rate"],
            "yunet_nme": yunet["nme"], "yunet_failure_rate": yunet["failure_rate"],
            "attr": {name: float((attr_pred[:, j] == attr_true[:, j]).mean()) for j, name in enumerate(spaces.attributes)}}


def evaluate_checkpoint(path: str | Path, fer_root: Path, mtfl_root: Path, detected: bool) -> dict[str, Any]:
    """Every table entry for one checkpoint."""
    torch.manual_seed(0)
    net, checkpoint = load_network(path)
    result: dict[str, Any] = {"checkpoint": str(path)}
    started = time.perf_counter()
    if "expr" in checkpoint.tasks:
        result["fer2013"] = fer2013(net, path, checkpoint, fer_root)
    if "lmk" in checkpoint.tasks:
        result["mtfl_aligned"] = mtfl_aligned(net, checkpoint, mtfl_root)
        if detected:
            result["mtfl_detected"] = mtfl_detected(path, checkpoint, mtfl_root)
            result["mtfl_detected+flip"] = mtfl_detected(path, checkpoint, mtfl_root, tta="flip")
    result["seconds"] = time.perf_counter() - started
    return result


def print_table(results: list[dict[str, Any]]) -> None:
    """Markdown tables: FER2013, then MTFL."""
    print("| checkpoint | PrivateTest acc | PrivateTest macro-F1 | +flip acc | +flip macro-F1 | PublicTest acc |")
    print("|---|---|---|---|---|---|")
    for r in results:
        if "fer2013" in r:
            f = r["fer2013"]
            print(f"| {r['checkpoint']} | {100 * f['PrivateTest']['accuracy']:.2f} | {100 * f['PrivateTest']['macro_f1']:.2f} "
                  f"| {100 * f['PrivateTest+flip']['accuracy']:.2f} | {100 * f['PrivateTest+flip']['macro_f1']:.2f} "
                  f"| {100 * f['PublicTest']['accuracy']:.2f} |")
    print()
    print("| checkpoint | crops | faces | NME % | FR@10 % | gender | smile | glasses | pose |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for key in ("mtfl_aligned", "mtfl_detected", "mtfl_detected+flip"):
            if key in r:
                m = r[key]
                faces = f"{m['detected']}/{m['faces']}" if "detected" in m else str(m["faces"])
                accs = " | ".join(f"{100 * m['attr'].get(a, float('nan')):.1f}" for a in ("gender", "smile", "glasses", "pose"))
                print(f"| {r['checkpoint']} | {key[5:]} | {faces} | {100 * m['nme']:.2f} | {100 * m['failure_rate']:.2f} | {accs} |")
                if "yunet_nme" in m and key == "mtfl_detected":  # reference: the detector's own 5 points against the annotations
                    print(f"| YuNet's points | detected | {faces} | {100 * m['yunet_nme']:.2f} | "
                          f"{100 * m['yunet_failure_rate']:.2f} | - | - | - | - |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", nargs="+", default=None, help="run folders or files (default: the shipped model)")
    parser.add_argument("--fer-root", type=Path, default=SHARED / "fer2013")
    parser.add_argument("--mtfl-root", type=Path, default=SHARED / "mtfl")
    parser.add_argument("--no-detected", action="store_true", help="skip the end-to-end MTFL run (the slow part)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.checkpoint is None:
        from facemtl.weights import base_model

        args.checkpoint = [str(base_model())]
    results = [evaluate_checkpoint(path, args.fer_root, args.mtfl_root, not args.no_detected) for path in args.checkpoint]
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
