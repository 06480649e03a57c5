"""brainviz: brain-tuning and brain alignment of language models.

Subpackages
-----------
data        datasets, the simulated default experiment, preprocessing, atlases, importers
models      checkpoint store, encoder + heads, attention read-outs
tuning      brain-tuning (the five variants of Schwartz et al. 2019, multi-participant heads)
evaluation  20-vs-20, significance tests with FDR, encoding metrics, noise ceilings
coupling    artificial neurons (query x key dimensions) paired with brain networks
viz         figures (cortical maps, curves, attention plots)

Nothing is loaded or downloaded at import time.
"""

__version__ = "0.1.0"
