"""Models: name resolution, encoder loading, checkpoint store, heads, attention read-outs."""

from brainviz.models.encoder import PRETRAINED, ModelNotFoundError, load_encoder, pretrained_path, resolve_model
from brainviz.models.store import Checkpoint, CheckpointError, list_checkpoints, load_checkpoint

__all__ = [
    "PRETRAINED", "ModelNotFoundError", "load_encoder", "pretrained_path", "resolve_model",
    "Checkpoint", "CheckpointError", "list_checkpoints", "load_checkpoint",
    # lazily imported (torch): BrainModel, BrainHeads, FMRIHead, MEGHead, cls_attention, ...
    "BrainModel", "BrainHeads", "FMRIHead", "MEGHead", "tokenize_windows",
    "cls_attention", "checkpoint_cls_attention", "layer_summary", "attention_change", "token_attention",
]

_LAZY = {
    "BrainModel": "brainviz.models.brain_model", "tokenize_windows": "brainviz.models.brain_model",
    "BrainHeads": "brainviz.models.heads", "FMRIHead": "brainviz.models.heads", "MEGHead": "brainviz.models.heads",
    "cls_attention": "brainviz.models.attention", "checkpoint_cls_attention": "brainviz.models.attention",
    "layer_summary": "brainviz.models.attention",
    "attention_change": "brainviz.models.attention", "token_attention": "brainviz.models.attention",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'brainviz.models' has no attribute {name!r}")
