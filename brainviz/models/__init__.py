"""Models: name resolution, encoder loading, checkpoint store, heads, attention read-outs."""

from brainviz.models.encoder import PRETRAINED, ModelNotFoundError, load_encoder, pretrained_path, resolve_model

__all__ = ["PRETRAINED", "ModelNotFoundError", "load_encoder", "pretrained_path", "resolve_model"]
