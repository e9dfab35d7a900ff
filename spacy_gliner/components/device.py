"""Where the torch model runs: on the GPU when spaCy was told to use one, else on the CPU."""
from __future__ import annotations


def model_device():
    import torch
    from thinc.api import get_current_ops

    ops = get_current_ops()
    if type(ops).__name__ == "CupyOps" and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def load_on_model_device(source, text_tower: bool = True):
    """The checkpoint at ``source`` (directory or hub id), its model moved to :func:`model_device`
    (without its text tower when a shared transformer holds it, ``text_tower=False``)."""
    from ..modeling.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(source, text_tower=text_tower)
    checkpoint.model.to(model_device())
    return checkpoint
