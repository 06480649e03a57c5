"""Datasets: the on-disk model, the simulated default experiment, preprocessing, word features.

Public API
----------
load_dataset, Dataset, DatasetMeta, FMRIRecording, MEGRecording, Space, Run, DatasetError
PreprocessConfig, fmri_examples, meg_examples, leave_one_run_out
simulate (see :mod:`brainviz.data.simulate`)
"""

from brainviz.data.dataset import (
    Dataset,
    DatasetError,
    DatasetMeta,
    FMRIRecording,
    MEGRecording,
    Run,
    Space,
    load_dataset,
)
from brainviz.data.preprocess import (
    FMRIExamples,
    Fold,
    MEGExamples,
    PreprocessConfig,
    fmri_examples,
    leave_one_run_out,
    meg_examples,
)

__all__ = [
    "Dataset", "DatasetError", "DatasetMeta", "FMRIRecording", "MEGRecording", "Run", "Space",
    "load_dataset", "FMRIExamples", "Fold", "MEGExamples", "PreprocessConfig", "fmri_examples",
    "leave_one_run_out", "meg_examples",
]
