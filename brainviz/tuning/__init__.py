"""Brain-tuning: the five variants of Schwartz, Toneva & Wehbe (2019) and multi-participant heads.

Public API
----------
TrainConfig, train, TrainJob, TrainError, VARIANTS, PRESETS, LOSSES, lr_multiplier, get_loss

Examples
--------
>>> from brainviz.tuning import TrainConfig, train                                  # doctest: +SKIP
>>> cfg = TrainConfig(dataset="data/reading", variant="fine-tuned", out="models/ft",
...                   participants=("P01",), folds=("run-1",), preset="quick")        # doctest: +SKIP
>>> ckpt_dir = train(cfg, progress=lambda f, m: print(f"{f:.0%} {m}"))              # doctest: +SKIP
"""

# torch is imported only when training starts; importing this package stays light.
from brainviz.tuning.config import TrainConfig
from brainviz.tuning.losses import LOSSES, get_loss
from brainviz.tuning.train import TrainError, TrainJob, lr_multiplier, train
from brainviz.tuning.variants import PRESETS, VARIANTS

__all__ = ["TrainConfig", "train", "TrainJob", "TrainError", "VARIANTS", "PRESETS", "LOSSES", "lr_multiplier", "get_loss"]
