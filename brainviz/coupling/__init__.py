"""Coupling artificial neurons (ANs) of BERT-family models with biological neurons (BNs), the
functional brain networks of fMRI (Liu et al. 2023, "Coupling Artificial Neurons in BERT and
Biological Neurons in the Human Brain"). See ``docs/coupling.md``.

Public API
----------
run_coupling, CouplingConfig, CouplingResult     the job (CLI: ``python -m brainviz couple``)
cross_story_coupling                             one test per BN, pairs selected on other stories
validated_pairs                                  cross-story pairs of every story (each tested once)
planted_networks, planted_recovery, network_ceiling   simulated ground truth vs recovered (:mod:`.truth`)
CouplingError                                    bad input (message names what is wrong)
compute_an_timecourses, an_activations, an_activations_naive, convolve_hrf, build_transcript,
    extract_qk, attention_shape, AttentionShape  artificial neurons (:mod:`.neurons`)
fit_networks, BrainNetworks, GaussianBernoulliRBM, fit_vsdbn, group_data   BNs (:mod:`.networks`)
couple, CouplingStats, pearson_matrix, fdr       statistics (:mod:`.couple`)
CATEGORIES, POS_MAPPING, top_pairs, category_counts, token_categories      POS tags (:mod:`.pos`)

Heavy libraries (torch, transformers, spaCy, scikit-learn) load only when a function needs them.
"""

from brainviz.coupling.api import (
    CouplingConfig,
    CouplingResult,
    compute_networks,
    compute_neurons,
    cross_story_coupling,
    run_coupling,
    validated_pairs,
)
from brainviz.coupling.couple import CouplingStats, couple, fdr, layer_summary, pearson_matrix
from brainviz.coupling.networks import (
    BrainNetworks,
    GaussianBernoulliRBM,
    fit_networks,
    fit_vsdbn,
    group_data,
    ica_networks,
    vsdbn_networks,
)
from brainviz.coupling.neurons import (
    AttentionShape,
    CouplingError,
    an_activations,
    an_activations_naive,
    attention_shape,
    build_transcript,
    compute_an_timecourses,
    convolve_hrf,
    extract_qk,
    story_grid,
)
from brainviz.coupling.truth import network_ceiling, planted_networks, planted_recovery
from brainviz.coupling.pos import CATEGORIES, POS_MAPPING, category_counts, token_categories, top_pairs

__all__ = [
    "run_coupling", "cross_story_coupling", "validated_pairs", "planted_networks", "planted_recovery",
    "network_ceiling", "CouplingConfig", "CouplingResult", "CouplingError", "compute_networks", "compute_neurons",
    "couple", "CouplingStats", "fdr", "layer_summary", "pearson_matrix",
    "BrainNetworks", "GaussianBernoulliRBM", "fit_networks", "fit_vsdbn", "group_data", "ica_networks", "vsdbn_networks",
    "AttentionShape", "an_activations", "an_activations_naive", "attention_shape", "build_transcript",
    "compute_an_timecourses", "convolve_hrf", "extract_qk", "story_grid",
    "CATEGORIES", "POS_MAPPING", "category_counts", "token_categories", "top_pairs",
]
