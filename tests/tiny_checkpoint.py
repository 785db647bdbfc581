"""A tiny untrained facemtl checkpoint (test_tiny backbone, every task, 32 px), saved as the
trainer saves one; for tests that run the inference pipeline end to end and check plumbing,
not accuracy."""

from pathlib import Path

from facemtl.labels import TASKS, LabelSpaces

TEMPLATE = [[0.41, 0.44], [0.59, 0.44], [0.5, 0.55], [0.43, 0.65], [0.57, 0.65]]
SIZE = 32


def make_tiny_checkpoint(path: Path) -> Path:
    import torch

    from facemtl.config import load_config
    from facemtl.io.checkpoint import save_checkpoint
    from facemtl.tasks.network import build_network

    torch.manual_seed(0)
    spaces = LabelSpaces(au_names=("AU1", "AU2", "AU12"))
    net = build_network("test_tiny", TASKS, spaces).eval()
    config = load_config(None, ["model.backbone=test_tiny", f"data.image_size={SIZE}"])
    return save_checkpoint(path, {f"net.{k}": v for k, v in net.state_dict().items()}, config_yaml=config.to_yaml(),
                           label_spaces=spaces, tasks=list(TASKS),
                           preprocess={"image_size": SIZE, "template_5pt": TEMPLATE})
