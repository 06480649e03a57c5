"""The simulated default experiment: a principled simulation with known ground truth.

Real corpora (Wehbe et al. 2014 / Schwartz et al. 2019 reading, Narratives listening) cannot
be downloaded here, so brainviz ships a generator that turns its three packaged stories into
two complete datasets whose every planted effect is written down beside the data. Every
analysis in brainviz (brain-tuning, 20-vs-20, FDR maps, AN-BN coupling) can therefore be
checked against the truth. ``docs/simulation.md`` describes the model in more detail.

Experiments
-----------
reading    (Wehbe 2014 / Schwartz 2019) the reading story, title first, one word every 0.5 s
           (RSVP), split at paragraph boundaries into 4 runs of about equal length; each run
           has 16 TRs of fixation before the first word and 15 after the last, so the 20 + 15
           TRs dropped by preprocessing mostly fall in fixation (the 4 trimmed TRs with words
           hold the haemodynamic rise at story onset). TR 2.0 s. fMRI on
           fsaverage5 for ``sub-01..sub-09``; 306-sensor MEG (Elekta names, 20 bins of 25 ms
           per word) for ``sub-01..sub-04`` (also in fMRI) and ``sub-10..sub-13``.
listening  (Narratives) the two listening stories, each its own run named after the story,
           with spoken word timings (syllable-based durations with jitter, pauses at commas,
           sentence and paragraph ends; about 2.6 words/s), 15 TRs of silence before the first
           word and 15 after the last. TR 1.5 s, 20 fMRI participants on fsaverage5 who heard
           both stories.

The ``small`` preset keeps the structure (4 reading runs, both stories, MEG/fMRI overlap) with
fewer participants and the first paragraphs of each story only.

Generative model (fMRI)
-----------------------
1. Words: spaCy (``brainviz.data.features``) gives POS, content/function class and a
   dependency parse (subject / object / root, depth in the tree); wordfreq gives log
   frequency; a small deterministic lexicon (:data:`CATEGORY_LEXICON`) assigns each content
   word one category out of people/social (incl. communication verbs), body, place, motion,
   emotion, object/tool, time/number, perception (sound/light), with fallback ``other``
   (function words: ``function``).
2. Neural drivers at time ``t`` are functions of the words with onset in ``[t - 10.1 s, t)``
   weighted by recency ``r = exp(-(t - onset) / recency_tau)``: category *presence*
   ``max r * [category]`` (8 drivers), ``word_length`` (sum of recency-weighted z-scored
   lengths of content words, linear), ``rare_word`` (max of r * a thresholded unigram
   surprisal, sigmoid(( -log p - 11.5) / 0.75)), ``content_density`` (recency-weighted share
   of content words), ``syntactic_depth`` (recency-weighted mean depth below the sentence
   root, capped at 8),
   ``subject_object`` (max r * subject) x (max r * object), ``social_emotion`` (people
   presence) x (emotion presence); listening adds ``word_rate`` (sum r /
   recency_tau, words per second). Most are nonlinear (max, products, ratios), so they are not
   a linear read-out of a pretrained [CLS] vector (``bench/simulation_check.py`` measures it)
   but remain functions of the words a model sees.
3. Haemodynamics: neural drivers on a 0.25 s grid (0 during fixation) are convolved with
   nilearn's SPM HRF and sampled at TR onsets; each column is scaled to unit variance over the
   kept TRs (after the 20 / 15 TR trim and per-run linear detrending). These are
   ``ground_truth/drivers.npy`` (TRs x drivers, identical for all participants).
4. Space: 5 left language regions (IFG, MFG, ATL, posterior STS/MTG, AG) defined by MNI
   centres and radii mapped onto fsaverage5 with :func:`brainviz.surface.vertices_near`, plus
   right homologues (radius x 0.75, signal r^2 x ``right_r2_scale``). Each region responds to
   its own profile of drivers, modulated by a shared smooth random field; target per-TR
   signal r^2 is ``peak_r2 * exp(-1.5 (d / radius)^2)`` (d = distance to the centre). Shared
   weights (``spatial_weights.npy``) are calibrated so ``drivers @ spatial_weights`` has that
   r^2 against unit-variance noise. Every other vertex carries no signal at all.
5. Listening adds ``n_networks`` (default 6) planted functional networks: a few Gaussian blobs
   (auditory cortex, TPJ/precuneus/mPFC, vmPFC/temporal pole, parahippocampal/retrosplenial,
   MT/premotor, intraparietal; some overlap the language regions) whose time course is one
   distinct driver (word_rate, people, emotion, place, motion, time_number).
6. Participants: region and network gains (log-normal, s.d. 0.25) times a participant
   responsiveness (shared by a person's fMRI and MEG), and a participant-specific smooth
   spatial modulation (x (1 + 0.3 field)) of the weights.
7. Noise: AR(1) in time (coefficient ``exp(-TR / noise_tau)``), ``structured_noise`` of it
   shared through 16 smooth spatial components with slow AR(1) time courses, unit variance per
   vertex, plus a per-run offset and linear drift (removed by detrending).

Generative model (MEG, reading)
-------------------------------
Each word's epoch (0-500 ms, 20 bins of 25 ms) is a sum of 4 evoked components with gamma
time kernels and fixed smooth sensor patterns on a synthetic 102-location helmet (magnetometer
+ two planar gradiometers per location): visual onset (100 ms, every word), word length
(150 ms), content vs function (250 ms) and log frequency (380 ms, N400m-like, rarer =
larger). The previous word's late response spills into the epoch (SOA 0.5 s). Participants
differ in component gains and latencies (+- ~12 ms); noise is spatially structured (smooth
components, AR(1) over bins) plus white sensor noise and a slow drift across words.

Ground truth (``<dataset>/ground_truth/``)
-------------------------------------------
``ground_truth.json`` (``"simulated": true``, drivers, regions with MNI centres, networks,
generative parameters, run label per TR, measured SNR), ``planted_mask.npy`` (bool 20,484),
``region_labels.npy`` (int32, 0 = none), ``drivers.npy`` (float32 TRs x drivers, BOLD level),
``neural_drivers.npy`` (float32 TRs x drivers, pre-HRF, exactly a function of each TR's
10.1 s word window), ``spatial_weights.npy`` (float32 drivers x 20,484), ``word_features.tsv``;
listening: ``network_maps.npy`` (K x 20,484), ``network_timecourses.npy`` (TRs x K; network
signal = timecourses @ maps) and ``network_neural_timecourses.npy`` (pre-HRF);
reading: ``meg_patterns.npy``, ``meg_kernels.npy``, ``meg_word_drivers.npy``,
``meg_sensor_positions.npy``. Load with :func:`load_ground_truth`.

Determinism: all randomness comes from ``numpy.random.default_rng`` streams keyed by
``(seed, experiment, purpose, participant)``; the same config gives byte-identical files.

Examples
--------
>>> from brainviz.data.simulate import SimulationConfig, simulate
>>> paths = simulate("/tmp/sim", SimulationConfig(preset="small"))   # doctest: +SKIP
>>> paths["reading"]                                                    # doctest: +SKIP
PosixPath('/tmp/sim/reading')
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import sys
import zlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from brainviz.config import ConfigError, JobConfig

SIMULATOR_VERSION = "1.0"
EXPERIMENTS = ("reading", "listening")
N_VERTICES = 20484
STORY_DIR = Path(__file__).resolve().parent / "stories"
GROUND_TRUTH_DIR = "ground_truth"
GROUND_TRUTH_JSON = "ground_truth.json"

ProgressFn = Callable[[float, str], None]

# --------------------------------------------------------------------------------------
# Presets and config
# --------------------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "reading_fmri": 9, "reading_meg": 8, "reading_shared": 4, "reading_words": None,
        "listening_fmri": 20, "listening_words": None,
    },
    "small": {
        "reading_fmri": 3, "reading_meg": 3, "reading_shared": 2, "reading_words": 640,
        "listening_fmri": 4, "listening_words": 160,
    },
}
READING_TR = 2.0
LISTENING_TR = 1.5
READING_SOA = 0.5  # s per word (RSVP)
N_READING_RUNS = 4
TRIM_START, TRIM_END = 20, 15  # TRs dropped per run by the 2019 preprocessing
# Fixation / silence around the words of each run, in TRs: the first 4 (5) trimmed TRs of a
# run hold words, so the haemodynamic rise at story onset falls in the trimmed part; the tail
# covers all 15 trimmed TRs.
LEAD_IN_TRS = {"reading": 16, "listening": 15}
TAIL_TRS = 15
GRID_DT = 0.25  # s; neural time grid (divides both TRs)
N_CV_PARTICIPANTS = 4  # participants whose cross-validated variance explained is measured
MEG_BINS, MEG_BIN_WIDTH = 20, 0.025


@dataclasses.dataclass(frozen=True)
class SimulationConfig(JobConfig):
    """Options of the simulated experiment.

    Attributes
    ----------
    preset : str
        ``"default"`` (9 fMRI + 8 MEG readers, 20 listeners, full stories) or ``"small"``
        (3 fMRI + 3 MEG readers with 2 shared, 4 listeners, first paragraphs only).
    seed : int
        Seed of every random stream (>= 0).
    peak_r2 : float
        Target per-TR signal r^2 at the centre of a left-hemisphere language region for an
        average participant (default 0.10; it falls off towards the region's edge).
    right_r2_scale : float
        Multiplier of ``peak_r2`` in the right-hemisphere homologues (default 0.35).
    network_r2 : float
        Target per-TR r^2 at the peak of each planted listening network (default 0.08).
    n_networks : int
        Number K of planted functional networks in the listening data (default 6, at most 8).
    recency_tau : float
        Time constant (s) of the exponential recency weighting of words (default 2.5).
    window : float
        Seconds of preceding words that drive the neural response (default 10.1, the
        preprocessing window).
    noise_tau : float
        Time constant (s) of the AR(1) fMRI noise: coefficient ``exp(-TR / noise_tau)``
        (default 2.0, i.e. 0.37 at TR 2 s and 0.47 at TR 1.5 s).
    structured_noise : float
        Share of the fMRI noise variance carried by smooth spatial components (default 0.25).
    meg_snr : float
        Peak amplitude of the feature-driven MEG components at their best sensor per unit (z)
        of their driver, relative to the noise s.d. (default 0.3: single-word correlations of
        about 0.2-0.3 at the best sensor and time bin; single epochs stay noisy, as in real MEG).
    """

    preset: str = "default"
    seed: int = 0
    peak_r2: float = 0.10
    right_r2_scale: float = 0.35
    network_r2: float = 0.08
    n_networks: int = 6
    recency_tau: float = 2.5
    window: float = 10.1
    noise_tau: float = 2.0
    structured_noise: float = 0.25
    meg_snr: float = 0.3

    def validate(self) -> None:
        name = type(self).__name__
        if self.preset not in PRESETS:
            raise ConfigError(f"{name}.preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigError(f"{name}.seed must be an integer >= 0, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))  # numpy integers -> int (JSON, cache keys)
        checks = [
            ("peak_r2", 0.0 < _num(self.peak_r2) < 0.9, "in (0, 0.9)"),
            ("right_r2_scale", 0.0 <= _num(self.right_r2_scale) <= 1.0, "in [0, 1]"),
            ("network_r2", 0.0 <= _num(self.network_r2) < 0.9, "in [0, 0.9)"),
            ("recency_tau", 0.0 < _num(self.recency_tau) <= 60.0, "in (0, 60] seconds"),
            ("window", 1.0 <= _num(self.window) <= 60.0, "in [1, 60] seconds"),
            ("noise_tau", 0.0 <= _num(self.noise_tau) <= 60.0, "in [0, 60] seconds"),
            ("structured_noise", 0.0 <= _num(self.structured_noise) < 1.0, "in [0, 1)"),
            ("meg_snr", 0.0 <= _num(self.meg_snr) <= 100.0, "in [0, 100]"),
        ]
        for field, ok, what in checks:
            if not ok:
                raise ConfigError(f"{name}.{field} must be {what}, got {getattr(self, field)!r}")
        if (
            isinstance(self.n_networks, bool)
            or not isinstance(self.n_networks, (int, np.integer))
            or not 1 <= self.n_networks <= len(NETWORK_SPECS)
        ):
            raise ConfigError(f"{name}.n_networks must be an integer in [1, {len(NETWORK_SPECS)}], got {self.n_networks!r}")
        object.__setattr__(self, "n_networks", int(self.n_networks))


def _num(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v if not isinstance(value, bool) else math.nan


# --------------------------------------------------------------------------------------
# Lexicon, regions, networks
# --------------------------------------------------------------------------------------

CATEGORIES = ("people", "body", "place", "motion", "emotion", "object", "time_number", "perception")
_NOMINAL = frozenset({"NOUN", "PROPN"})
CATEGORY_POS: dict[str, frozenset[str]] = {
    "people": frozenset({"NOUN", "PROPN", "VERB"}),  # VERB: communication verbs (social)
    "body": _NOMINAL,
    "place": _NOMINAL,
    "object": _NOMINAL,
    "time_number": frozenset({"NOUN", "PROPN", "NUM", "ADJ", "ADV"}),
    "motion": frozenset({"VERB"}),
    "emotion": frozenset({"ADJ", "NOUN", "VERB", "ADV"}),
    "perception": frozenset({"NOUN", "VERB", "ADJ"}),
}
# Lookup priority (first match wins).
CATEGORY_ORDER = ("people", "body", "place", "object", "time_number", "motion", "emotion", "perception")

CATEGORY_LEXICON: dict[str, frozenset[str]] = {
    "people": frozenset("""
        man men woman women girl girls boy boys child children kid kids baby babies people person
        persons friend friends mother mothers father fathers mum mom dad papa grandmother
        grandmothers grandma gran granny grandfather grandpa brother brothers sister sisters aunt
        aunts uncle uncles cousin cousins son sons daughter daughters wife wives husband husbands
        family families parent parents teacher teachers student students apprentice apprentices
        master masters keeper keepers captain captains crew passenger passengers mechanic vicar
        postman paperboy plumber neighbour neighbours neighbor neighbors stranger strangers thief
        thieves cook cooks doctor nurse priest king queen duchess duke lord lady ladies gentleman
        guard guards sailor sailors fisherman fishermen farmer baker teenager teenagers commuter
        commuters darling lad lads lass couple crowd audience ringer sweep owner boss worker workers
        villager villagers group team mr mrs ms sir madam dog dogs goose geese goat goats cat cats
        hen hens horse horses bird birds animal animals
        mira tobin pell vesk quillon gerald agnes ruth pete dev callow hessa dunmore ellis callum oona
        ashgrove orrin brindle aldra fenn garrow murray petrakis halloran ivo finch theo biscuit
        say says said saying tell tells told telling ask asks asked asking answer answered reply
        replied whisper whispered whispering talk talked talking speak spoke speaking call called
        calling introduce introduced meet met greet greeted thank thanked
    """.split()),
    "body": frozenset("""
        hand hands face faces eye eyes head heads mouth mouths knee knees finger fingers thumb
        thumbs nose noses ear ears leg legs arm arms foot feet toe toes heel heels shoulder
        shoulders neck back spine chest heart hearts stomach belly breath lung lungs skin hair
        beard cheek cheeks chin lip lips tooth teeth tongue throat forehead eyebrow eyebrows elbow
        elbows wrist wrists palm palms knuckle knuckles ankle ankles rib ribs bone bones blood
        muscle muscles body bodies brain fist fists hip hips jaw lap tears sweat
    """.split()),
    "place": frozenset("""
        room rooms hall halls school schools library libraries kitchen kitchens tower towers dome
        domes floor floors stair stairs staircase stairway corridor corridors gallery galleries loft
        attic cellar chamber chambers passage passages alcove pantry entrance doorway doorstep house
        houses home homes cottage building buildings church chapel town towns city village street
        streets lane lanes road roads path paths bridge market markets shop shops pub office cinema
        garden gardens yard lawn field fields farm forest wood woods valley valleys mountain
        mountains peak peaks hill hills cliff cliffs island islands harbour harbor pier shore coast
        beach sea seas ocean river lake bay channel mainland county country world sky observatory
        lighthouse breakwater wheelhouse deck north south east west place places roof roofs rooftop
        catwalk workshop storage courtyard landing harrowgate carrow
    """.split()),
    "object": frozenset("""
        lantern lanterns lamp lamps candle candles spoon spoons bowl bowls cup cups plate plates
        glass glasses bottle bottles jar jars pot pots kettle knife knives fork tool tools hammer
        hammers screwdriver wrench nail nails screw screws bolt bolts hinge hinges latch latches
        lock locks key keys rope ropes chain chains ladder ladders bucket buckets broom brush cloth
        cloths rag rags towel sack sacks bag bags basket baskets box boxes crate trunk shelf shelves
        table tables chair chairs stool stools bench benches desk bed beds cabinet cabinets door
        doors window windows wall walls shutter shutters curtain curtains frame frames book books
        notebook notebooks paper papers page pages letter letters map maps chart charts pen pencil
        ink chalkboard slate slates clock clocks bell bells lens lenses telescope telescopes
        instrument instruments engine engines generator radio phone torch torches flare flares
        binoculars wheel wheels crank handle handles lever switch button wire wires pipe pipes panel
        panels boat boats ship ships ferry car cars bus train coat coats cloak cloaks boot boots
        shoe shoes slippers wellies hat gown shirt sleeve sleeves blanket pillow umbrella toolbox
        workbench calipers cake cakes bread pie pies tea oven stove saucer tin sugar flour butter
        egg eggs plum plums fruit recipe sword coin coins money purse purses disc mirror brass iron
        copper silver bronze stone stones oil wax leather plank planks post posts rail rails rung
        rungs trapdoor maud tenney
    """.split()),
    "time_number": frozenset("""
        time times day days night nights morning mornings evening evenings afternoon afternoons noon
        midnight dawn dusk sunset sunrise daylight hour hours minute minutes second seconds moment
        moments week weeks weekend month months year years decade decades century centuries season
        seasons spring summer autumn winter winters today tonight tomorrow yesterday monday tuesday
        wednesday thursday friday saturday sunday january february april june july august september
        october november december christmas birthday birthdays supper breakfast lunch dinner
        o'clock age number numbers half quarter dozen dozens hundred hundreds thousand thousands
        million pair pairs
    """.split()),
    "motion": frozenset("""
        run ran running runs walk walked walking walks go went gone going goes come came coming comes
        move moved moving moves climb climbed climbing fall fell fallen falling falls jump jumped
        leap leapt step stepped stepping rush rushed hurry hurried hurrying race raced dash dashed
        sprint sprinted push pushed pull pulled pulling drag dragged throw threw thrown toss tossed
        swing swung swinging spin spun roll rolled rolling slide slid sliding slip slipped drop
        dropped lift lifted raise raised carry carried carrying carries fly flew flown swim swam
        drive drove driven ride rode sail sailed cross crossed crossing turn turned turning bend
        bent lean leaned duck ducked rise rose risen sink sank sunk drift drifting march marched
        waddle waddling stagger staggered staggers tumble tumbled sweep swept whirl whirled burst
        reach reached pass passed follow followed lead led chase chased flee fled escape escaped
        enter entered leave left leaving return returned arrive arrived head heading shove shoved
        tug tugged heave heaved haul hauled bring brought take took taken fetch wave shake shook
        tremble trembled sway swayed stride strode crawl crawled creep crept wander wandered travel
        travelled traveled kick kicked tilt tilted sprinted thumped hurried shift shifted
    """.split()),
    "emotion": frozenset("""
        afraid fear feared fears frightened scared terrified terror panic worry worried anxious
        nervous calm calmly angry anger furious rage mad annoyed cross happy happiness glad joy
        joyful delighted cheerful pleased sad sadness sorrow unhappy upset miserable cry cried
        crying weep wept laugh laughed laughing laughter giggle giggled giggling smile smiled
        smiling grin grinned love loved loving lovely hate hated hatred proud pride shame ashamed
        embarrassed guilty lonely hope hoped hopeful despair surprised surprise astonishment amazed
        shock shocked relief relieved excited exciting excitement bored curious curiosity jealous
        grateful sorry displeased impressed tired weary patient impatient feeling feelings feel felt
        feels kiss kissed swear swearing scream screamed shout shouted groan groaned sigh sighed
        terrible wonderful awful horrible dread brave courage cruel kind gentle gently funny
        serious foolish ridiculous honest trust trusted wish wished fuss cheerfully happily sadly
        angrily nervously safe safely danger dangerous careful carefully good bad worse worst best
        better strange odd precious beautiful ugly pretty nice lucky luck poor dear sweet bitter
        cheer blame blamed blaming forgive forgave apologise apologised apologize apologized promise
        promised dare dared hero brave bravely laugh shy sensible stubborn grumpy
    """.split()),
    "perception": frozenset("""
        see sees saw seen seeing look looks looked looking watch watched watching stare stared
        staring glance glanced notice noticed hear hears heard hearing listen listens listened
        listening smell smelled smelt taste tasted sound sounds noise noises voice voices silence
        thunder lightning light lights glow glowed glitter glittered shine shone flicker flickered
        gleam gleaming spark sparks colour color shadow shadows dark darkness bright brightness loud
        quiet silent pale faint dim shiny rattle rattling rattled bang banging banged knock knocks
        knocked tap taps tapped ring rang rung echo echoed creak creaked click clack roar roaring
        hum hummed whistle whistled scrape drumming drummed groan groaning squeal squealed
    """.split()),
}
_NUMBER_WORD = re.compile(
    r"^(\d+(st|nd|rd|th)?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    r"fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|"
    r"hundred|thousand|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|"
    r"thirteenth|twentieth|thirtieth|fortieth)(-\w+)?$"
)
SUBJECT_DEPS = frozenset({"nsubj", "nsubjpass", "csubj", "csubjpass"})
OBJECT_DEPS = frozenset({"dobj", "obj", "iobj", "pobj", "dative", "attr", "oprd"})
LENGTH_MEAN, LENGTH_SD = 4.5, 2.5  # fixed corpus-free constants so values do not depend on the preset
RARITY_THRESHOLD, RARITY_WIDTH = 11.5, 0.75  # on -ln p (unigram surprisal), nats
MAX_DEPTH = 8.0  # dependency depths are capped here (long chains are parser artefacts)

BASE_DRIVERS: tuple[tuple[str, str, str], ...] = (
    *((c, "nonlinear", f"presence of a word of category {c!r}: max over the window of recency x [category]") for c in CATEGORIES),
    ("word_length", "linear", "sum over content words of recency x z-scored length"),
    ("rare_word", "nonlinear", "max of recency x thresholded unigram surprisal sigmoid((-log p - 11.5) / 0.75)"),
    ("content_density", "nonlinear", "recency-weighted share of content words (ratio)"),
    ("syntactic_depth", "nonlinear", "recency-weighted mean depth in the dependency tree, capped at 8 (ratio)"),
    ("subject_object", "nonlinear", "(max recency x subject) * (max recency x object): a transitive clause"),
    ("social_emotion", "nonlinear", "(max recency x people/social word) * emotion presence"),
)
LISTENING_DRIVERS = (("word_rate", "linear", "recency-weighted word count / recency_tau (words per second)"),)


@dataclasses.dataclass(frozen=True)
class RegionSpec:
    name: str
    mni: tuple[float, float, float]
    radius: float
    profile: dict[str, float]


LANGUAGE_REGIONS: tuple[RegionSpec, ...] = (
    RegionSpec("IFG", (-50.0, 22.0, 8.0), 14.0,
               {"syntactic_depth": 1.0, "subject_object": 0.8, "content_density": 0.5, "rare_word": 0.4, "social_emotion": 0.3}),
    RegionSpec("MFG", (-42.0, 18.0, 42.0), 12.0,
               {"time_number": 0.9, "syntactic_depth": 0.5, "object": 0.4, "subject_object": 0.4}),
    RegionSpec("ATL", (-50.0, 10.0, -28.0), 13.0,
               {"people": 1.0, "emotion": 0.8, "social_emotion": 0.8, "body": 0.3}),
    RegionSpec("STS_MTG", (-56.0, -38.0, 0.0), 14.0,
               {"rare_word": 0.8, "word_length": 0.6, "motion": 0.6, "perception": 0.5, "content_density": 0.5, "people": 0.3}),
    RegionSpec("AG", (-45.0, -65.0, 30.0), 13.0,
               {"place": 1.0, "object": 0.7, "body": 0.5, "time_number": 0.4, "motion": 0.4}),
)
RIGHT_RADIUS_SCALE = 0.75


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    name: str
    driver: str
    blobs: tuple[tuple[tuple[float, float, float], float, float], ...]  # (mni, radius, weight)


NETWORK_SPECS: tuple[NetworkSpec, ...] = (
    NetworkSpec("auditory", "word_rate", (((-52.0, -22.0, 8.0), 14.0, 1.0), ((54.0, -18.0, 8.0), 14.0, 0.9))),
    NetworkSpec("social", "people", (((-50.0, -58.0, 22.0), 12.0, 1.0), ((52.0, -55.0, 22.0), 12.0, 0.8),
                                     ((-6.0, -60.0, 40.0), 12.0, 0.8), ((-6.0, 50.0, 20.0), 12.0, 0.7))),
    NetworkSpec("emotion", "emotion", (((-5.0, 45.0, -10.0), 12.0, 1.0), ((-38.0, 20.0, -32.0), 10.0, 0.8),
                                       ((40.0, 20.0, -32.0), 10.0, 0.6))),
    NetworkSpec("scene", "place", (((-26.0, -40.0, -12.0), 12.0, 1.0), ((28.0, -40.0, -12.0), 12.0, 0.8),
                                   ((-10.0, -55.0, 10.0), 10.0, 0.7))),
    NetworkSpec("motion", "motion", (((-45.0, -70.0, 0.0), 12.0, 1.0), ((46.0, -68.0, 0.0), 12.0, 0.8),
                                     ((-30.0, -5.0, 55.0), 10.0, 0.6))),
    NetworkSpec("number", "time_number", (((-35.0, -50.0, 45.0), 12.0, 1.0), ((38.0, -48.0, 45.0), 12.0, 0.8))),
    NetworkSpec("somatosensory", "body", (((-40.0, -28.0, 55.0), 12.0, 1.0), ((42.0, -26.0, 55.0), 12.0, 0.7))),
    NetworkSpec("lexical", "rare_word", (((-44.0, -58.0, -14.0), 10.0, 1.0), ((44.0, -58.0, -14.0), 8.0, 0.5))),
)

# MEG components: name, per-word driver, peak latency (s), gamma shape, relative amplitude, sources
MEG_COMPONENTS: tuple[tuple[str, str, float, float, float], ...] = (
    ("visual_onset", "constant 1 for every word", 0.100, 6.0, 1.5),
    ("word_length", "z-scored word length", 0.150, 6.0, 1.0),
    ("content", "content word (1) minus the mean", 0.250, 5.0, 0.8),
    ("log_freq", "minus the z-scored log frequency (rarer = larger)", 0.380, 4.0, 1.0),
)
# sources on the unit helmet: list of (centre direction, dipole offset direction, sign)
_MEG_SOURCES: dict[str, tuple[tuple[tuple[float, float, float], tuple[float, float, float], float], ...]] = {
    "visual_onset": (((-0.3, -0.9, 0.1), (0.0, 0.0, 1.0), 1.0), ((0.3, -0.9, 0.1), (0.0, 0.0, 1.0), 1.0)),
    "word_length": (((-0.65, -0.7, -0.05), (0.0, 0.3, 1.0), 1.0),),
    "content": (((-0.75, 0.5, 0.2), (0.0, 1.0, 0.5), 1.0), ((-0.9, 0.0, 0.0), (0.0, 1.0, 0.0), 0.5)),
    "log_freq": (((-0.92, -0.2, 0.05), (0.0, 0.2, 1.0), 1.0), ((0.92, -0.2, 0.05), (0.0, 0.2, 1.0), 0.35)),
}


# --------------------------------------------------------------------------------------
# Random streams
# --------------------------------------------------------------------------------------


def _rng(seed: int, *keys: str) -> np.random.Generator:
    """Independent generator for (seed, keys...) -- stable across runs and presets."""
    entropy = [int(seed)] + [zlib.crc32(str(k).encode("utf-8")) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(entropy))


# --------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------


class _Progress:
    def __init__(self, callback: ProgressFn | None, total: float):
        self.callback = callback
        self.total = max(float(total), 1e-9)
        self.done = 0.0
        self.bar = None
        if callback is None and sys.stderr is not None and hasattr(sys.stderr, "isatty") and sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=100, unit="%", desc="simulating", leave=False, file=sys.stderr,
                                bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}]")
            except ImportError:  # pragma: no cover
                self.bar = None

    def step(self, amount: float, message: str) -> None:
        self.done = min(self.total, self.done + amount)
        self.report(message)

    def report(self, message: str) -> None:
        frac = self.done / self.total
        if self.callback is not None:
            self.callback(frac, message)
        elif self.bar is not None:
            self.bar.n = round(100 * frac)
            self.bar.set_postfix_str(message, refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------------------
# Stories and stimulus tables
# --------------------------------------------------------------------------------------


def read_story(name: str) -> tuple[str, list[list[str]]]:
    """``(title, paragraphs)`` of a packaged story; each paragraph a list of words."""
    path = STORY_DIR / f"{name}.txt"
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    blocks = [b for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    title = " ".join(blocks[0].split())
    return title, [b.split() for b in blocks[1:]]


def _story_paragraphs(name: str, max_words: int | None) -> tuple[str, list[list[str]]]:
    """Title + paragraphs; the title is the first 'paragraph' (shown / read first)."""
    title, paragraphs = read_story(name)
    paras = [title.split()] + paragraphs
    if max_words is not None:
        out, n = [], 0
        for p in paras:
            out.append(p)
            n += len(p)
            if n >= max_words:
                break
        paras = out
    return title, paras


def _split_runs(paragraphs: list[list[str]], n_runs: int) -> list[list[list[str]]]:
    """Split paragraphs into ``n_runs`` groups of about equal word count (at paragraph ends)."""
    counts = np.cumsum([len(p) for p in paragraphs])
    total = counts[-1]
    cuts, prev = [], 0
    for k in range(1, n_runs):
        target = total * k / n_runs
        cut = int(np.argmin(np.abs(counts - target))) + 1
        cut = min(max(cut, prev + 1), len(paragraphs) - (n_runs - k))
        cuts.append(cut)
        prev = cut
    bounds = [0, *cuts, len(paragraphs)]
    return [paragraphs[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _syllables(word: str) -> int:
    w = re.sub(r"[^a-z]", "", word.lower())
    if not w:
        return 1
    n = len(re.findall(r"[aeiouy]+", w))
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")) and n > 1:
        n -= 1
    return max(n, 1)


def _speech_timing(paragraphs: list[list[str]], rng: np.random.Generator, start: float) -> tuple[np.ndarray, np.ndarray]:
    """Onsets and durations (s) of spoken words: syllable-based durations, pauses at punctuation."""
    onsets, durations = [], []
    t = start
    for pi, para in enumerate(paragraphs):
        for wi, word in enumerate(para):
            syl = _syllables(word)
            dur = (0.09 + 0.15 * syl) * float(np.exp(rng.normal(0.0, 0.12)))
            onsets.append(t)
            durations.append(dur)
            stripped = word.rstrip("\"'”’)")
            if wi == len(para) - 1:
                gap = 0.75 if pi > 0 else 0.9  # paragraph end (a longer pause after the title)
            elif stripped.endswith((".", "!", "?")):
                gap = 0.40
            elif stripped.endswith((",", ";", ":", "-", "—")):
                gap = 0.18
            else:
                gap = 0.03
            t += dur + gap * float(np.exp(rng.normal(0.0, 0.25)))
    return np.asarray(onsets), np.asarray(durations)


@dataclasses.dataclass
class _RunLayout:
    name: str
    n_trs: int
    rows: np.ndarray  # stimulus rows of the run


def _reading_stimulus(max_words: int | None, tr: float):
    import pandas as pd

    title, paras = _story_paragraphs("reading", max_words)
    lead_in, tail = LEAD_IN_TRS["reading"] * tr, TAIL_TRS * tr
    frames, layouts, row = [], [], 0
    for k, group in enumerate(_split_runs(paras, N_READING_RUNS)):
        words = [w for p in group for w in p]
        n = len(words)
        onsets = lead_in + READING_SOA * np.arange(n)
        name = f"run-{k + 1}"
        frames.append(pd.DataFrame({"onset": onsets, "duration": READING_SOA, "word": words, "run": name, "story": "reading"}))
        n_trs = int(math.ceil((lead_in + n * READING_SOA + tail) / tr - 1e-9))
        layouts.append(_RunLayout(name, n_trs, np.arange(row, row + n)))
        row += n
    return pd.concat(frames, ignore_index=True), layouts, {"reading": title}


def _listening_stimulus(max_words: int | None, tr: float, seed: int):
    import pandas as pd

    lead_in, tail = LEAD_IN_TRS["listening"] * tr, TAIL_TRS * tr
    frames, layouts, titles, row = [], [], {}, 0
    for name in ("listening_1", "listening_2"):
        title, paras = _story_paragraphs(name, max_words)
        titles[name] = title
        words = [w for p in paras for w in p]
        onsets, durations = _speech_timing(paras, _rng(seed, "listening", "timing", name), lead_in)
        # millisecond precision, as parsed back from the stimulus table (so the ground-truth
        # drivers use exactly the onsets the preprocessing windows will see)
        onsets = np.array([float(f"{v:.3f}") for v in onsets])
        durations = np.array([float(f"{v:.3f}") for v in durations])
        frames.append(pd.DataFrame({"onset": onsets, "duration": durations, "word": words, "run": name, "story": name}))
        n_trs = int(math.ceil((onsets[-1] + durations[-1] + tail) / tr - 1e-9))
        layouts.append(_RunLayout(name, n_trs, np.arange(row, row + len(words))))
        row += len(words)
    return pd.concat(frames, ignore_index=True), layouts, titles


# --------------------------------------------------------------------------------------
# Word-level linguistics
# --------------------------------------------------------------------------------------


def _lookup_forms(w: str) -> list[str]:
    forms = [w]
    if w.endswith("ies") and len(w) > 4:
        forms.append(w[:-3] + "y")
    if w.endswith("es") and len(w) > 3:
        forms.append(w[:-2])
    if w.endswith("s") and len(w) > 3:
        forms.append(w[:-1])
    if w.endswith("ed") and len(w) > 4:
        forms += [w[:-2], w[:-1]]
        if len(w) > 5 and w[-3] == w[-4]:
            forms.append(w[:-3])
    if w.endswith("ing") and len(w) > 5:
        forms += [w[:-3], w[:-3] + "e"]
        if len(w) > 6 and w[-4] == w[-5]:
            forms.append(w[:-4])
    if w.endswith("ly") and len(w) > 4:
        forms.append(w[:-2])
    return forms


def word_category(word: str, pos: str, is_content: bool) -> str:
    """Lexical-semantic category of one word (see :data:`CATEGORY_LEXICON`).

    Function words get ``"function"``; content words not in the lexicon ``"other"``, except
    numbers (``time_number``) and unknown proper nouns (``people``: mostly characters).
    """
    from brainviz.data.features import clean_word

    if not is_content:
        return "function" if pos != "NUM" else "time_number"
    w = clean_word(word).lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    forms = _lookup_forms(w)
    for cat in CATEGORY_ORDER:
        if pos in CATEGORY_POS[cat] and any(f in CATEGORY_LEXICON[cat] for f in forms):
            return cat
    if pos == "NUM" or (pos in ("ADJ", "NOUN") and _NUMBER_WORD.match(w)):
        return "time_number"
    if pos == "PROPN" and w and w[0].isalpha():
        return "people"
    return "other"


def parse_words(words: Sequence[str]) -> tuple[list[str], list[str], list[int]]:
    """spaCy POS, dependency label and depth in the dependency tree of each word.

    Uses the same tokens and pipeline as :func:`brainviz.data.features.tag_words`, so the POS
    tags are identical to the ones :func:`~brainviz.data.features.annotate_stimulus` computes.
    """
    from brainviz.data.features import parse_words as parse

    doc, cleaned = parse(words)
    pos, deps, depths = [], [], []
    for tok, c in zip(doc, cleaned):
        depth, node = 0, tok
        while node.head.i != node.i and depth < 500:
            node, depth = node.head, depth + 1
        pos.append(tok.pos_ if c else "PUNCT")
        deps.append(tok.dep_)
        depths.append(depth)
    return pos, deps, depths


def _parse_stories(stimulus) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """POS, dependency labels and depths of every stimulus row, parsed story by story."""
    words = stimulus["word"].astype(str).tolist()
    pos = np.empty(len(words), dtype=object)
    deps = np.empty(len(words), dtype=object)
    depths = np.zeros(len(words), dtype=int)
    for _, idx in stimulus.groupby(stimulus["story"].astype(str), sort=False).indices.items():
        p, d, dp = parse_words([words[i] for i in idx])
        pos[idx], deps[idx], depths[idx] = p, d, dp
    return pos, deps, depths


def word_features(stimulus, parse: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None):
    """Per-word table used by the generator: category, role, depth, z-length, rarity, ...

    ``stimulus`` must already carry ``pos, is_content, length, log_freq``
    (:func:`brainviz.data.features.annotate_stimulus`); ``parse`` is the output of
    ``_parse_stories`` (computed here when not given).
    """
    import pandas as pd

    stim = stimulus
    _, deps, depths = parse if parse is not None else _parse_stories(stim)
    deps = np.asarray(deps).astype(str)
    words = stim["word"].astype(str).tolist()
    pos = stim["pos"].astype(str).to_numpy()
    content = stim["is_content"].to_numpy(dtype=bool)
    cats = [word_category(w, p, c) for w, p, c in zip(words, pos, content)]
    role = np.where(np.isin(deps, list(SUBJECT_DEPS)), "subject",
                    np.where(np.isin(deps, list(OBJECT_DEPS)), "object", np.where(deps == "ROOT", "root", "other")))
    surprisal = -stim["log_freq"].to_numpy(dtype=float)
    rarity = content / (1.0 + np.exp(-(surprisal - RARITY_THRESHOLD) / RARITY_WIDTH))
    return pd.DataFrame({
        "word": words,
        "run": stim["run"].astype(str).to_numpy(),
        "pos": pos,
        "is_content": content,
        "category": cats,
        "dep": deps,
        "role": role,
        "depth": np.asarray(depths, dtype=int),
        "z_length": (stim["length"].to_numpy(dtype=float) - LENGTH_MEAN) / LENGTH_SD,
        "log_freq": stim["log_freq"].to_numpy(dtype=float),
        "rarity": rarity,
    })


# --------------------------------------------------------------------------------------
# Drivers
# --------------------------------------------------------------------------------------


def _word_arrays(wf) -> dict[str, np.ndarray]:
    cat = wf["category"].to_numpy()
    content = wf["is_content"].to_numpy(dtype=float)
    subj = (wf["role"].to_numpy() == "subject").astype(float)
    out = {f"cat_{c}": (cat == c).astype(float) for c in CATEGORIES}
    out.update({
        "content": content,
        "zlen_content": content * wf["z_length"].to_numpy(dtype=float),
        "rarity": wf["rarity"].to_numpy(dtype=float),
        "depth": np.minimum(wf["depth"].to_numpy(dtype=float), MAX_DEPTH),
        "subject": subj,
        "object": (wf["role"].to_numpy() == "object").astype(float),
    })
    return out


def neural_drivers(
    times: np.ndarray, onsets: np.ndarray, arrays: dict[str, np.ndarray], names: Sequence[str],
    window: float, tau: float,
) -> np.ndarray:
    """Neural drivers (len(times) x len(names)) from the words of one run.

    At time ``t`` the words with onset in ``[t - window, t)`` count, weighted by
    ``exp(-(t - onset) / tau)``; with no word in the window every driver is 0.
    """
    times = np.asarray(times, dtype=float)
    lo = np.searchsorted(onsets, times - window, side="left")
    hi = np.searchsorted(onsets, times, side="left")
    width = int((hi - lo).max(initial=0))
    out = np.zeros((len(times), len(names)))
    if width == 0:
        return out
    idx = lo[:, None] + np.arange(width)[None, :]
    valid = idx < hi[:, None]
    idx = np.where(valid, idx, 0)
    lag = times[:, None] - onsets[idx]
    r = np.where(valid, np.exp(-lag / tau), 0.0)
    rsum = r.sum(axis=1)
    safe = np.where(rsum > 0, rsum, 1.0)

    def wmax(a: np.ndarray) -> np.ndarray:
        return (r * a[idx]).max(axis=1)

    def wsum(a: np.ndarray) -> np.ndarray:
        return (r * a[idx]).sum(axis=1)

    emotion = wmax(arrays["cat_emotion"])
    for j, name in enumerate(names):
        if name in CATEGORIES:
            v = emotion if name == "emotion" else wmax(arrays[f"cat_{name}"])
        elif name == "word_length":
            v = wsum(arrays["zlen_content"])
        elif name == "rare_word":
            v = wmax(arrays["rarity"])
        elif name == "content_density":
            v = wsum(arrays["content"]) / safe
        elif name == "syntactic_depth":
            v = wsum(arrays["depth"]) / safe
        elif name == "subject_object":
            v = wmax(arrays["subject"]) * wmax(arrays["object"])
        elif name == "social_emotion":
            v = wmax(arrays["cat_people"]) * emotion
        elif name == "word_rate":
            v = rsum / tau
        else:  # pragma: no cover - programming error
            raise KeyError(name)
        out[:, j] = v
    return out


@functools.lru_cache(maxsize=4)
def _hrf(dt: float) -> np.ndarray:
    from nilearn.glm.first_level.hemodynamic_models import spm_hrf

    return np.asarray(spm_hrf(dt, oversampling=1, time_length=32.0), dtype=float)


def _kept_mask(layouts: Sequence[_RunLayout]) -> np.ndarray:
    parts = []
    for lay in layouts:
        m = np.zeros(lay.n_trs, dtype=bool)
        m[TRIM_START: lay.n_trs - TRIM_END] = True
        parts.append(m)
    return np.concatenate(parts)


def _run_of_tr(layouts: Sequence[_RunLayout]) -> np.ndarray:
    return np.concatenate([np.full(lay.n_trs, k) for k, lay in enumerate(layouts)])


def _detrend_kept(x: np.ndarray, run_of_tr: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Rows of ``x`` at kept TRs, linearly detrended within run (float64)."""
    x = np.asarray(x)
    out = []
    for k in np.unique(run_of_tr):
        rows = np.flatnonzero((run_of_tr == k) & kept)
        block = np.asarray(x[rows], dtype=float)
        t = np.linspace(-1.0, 1.0, len(rows))
        t = (t - t.mean()) / np.sqrt(((t - t.mean()) ** 2).sum())
        block -= block.mean(axis=0)
        block -= np.outer(t, t @ block)
        out.append(block)
    return np.concatenate(out, axis=0)


def _build_drivers(stim, wf, layouts, tr: float, names: Sequence[str], config: SimulationConfig):
    """(BOLD drivers, neural drivers at TR times, scales) -- both TRs x drivers."""
    arrays = _word_arrays(wf)
    onsets_all = stim["onset"].to_numpy(dtype=float)
    h = _hrf(GRID_DT)
    step = int(round(tr / GRID_DT))
    bold_parts, neural_tr_parts = [], []
    for lay in layouts:
        rows = lay.rows
        arr = {k: v[rows] for k, v in arrays.items()}
        onsets = onsets_all[rows]
        n_grid = lay.n_trs * step
        grid = GRID_DT * np.arange(n_grid)
        neural = neural_drivers(grid, onsets, arr, names, config.window, config.recency_tau)
        bold = np.stack([np.convolve(neural[:, j], h)[:n_grid] for j in range(len(names))], axis=1) * GRID_DT
        bold_parts.append(bold[::step][: lay.n_trs])
        tr_times = tr * np.arange(lay.n_trs)
        neural_tr_parts.append(neural_drivers(tr_times, onsets, arr, names, config.window, config.recency_tau))
    bold = np.concatenate(bold_parts)
    neural_tr = np.concatenate(neural_tr_parts)
    kept, run_of_tr = _kept_mask(layouts), _run_of_tr(layouts)
    sd = _detrend_kept(bold, run_of_tr, kept).std(axis=0)
    if np.any(sd < 1e-12):
        bad = [n for n, s in zip(names, sd) if s < 1e-12]
        raise RuntimeError(f"drivers {bad} do not vary over the kept TRs")
    return bold / sd, neural_tr, sd


# --------------------------------------------------------------------------------------
# Cortical space
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _smoother():
    """Row-normalised (self + neighbours) averaging operator on both fsaverage5 hemispheres."""
    import scipy.sparse as sp

    from brainviz.surface import HEMIS, N_PER_HEMI, fsaverage5_mesh

    blocks = []
    for hemi in HEMIS:
        faces = np.asarray(fsaverage5_mesh("pial", hemi)[1], dtype=np.int64)
        i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0]])
        j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2]])
        adj = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(N_PER_HEMI, N_PER_HEMI)).tocsr()
        adj.data[:] = 1.0
        adj = adj + sp.identity(N_PER_HEMI, format="csr")
        deg = np.asarray(adj.sum(axis=1)).ravel()
        blocks.append(sp.diags(1.0 / deg) @ adj)
    return sp.block_diag(blocks, format="csr")


def _smooth_fields(rng: np.random.Generator, n: int, n_iter: int) -> np.ndarray:
    """``n`` smooth random fields on the mesh (n x 20484), each with unit s.d."""
    x = rng.standard_normal((N_VERTICES, n))
    s = _smoother()
    for _ in range(n_iter):
        x = s @ x
    x -= x.mean(axis=0)
    x /= x.std(axis=0)
    return np.ascontiguousarray(x.T)


def _blob(mni: Sequence[float], radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertices within ``radius`` of ``mni`` and their falloff ``exp(-1.5 (d / radius)^2)``."""
    from brainviz.surface import pial_coordinates, vertices_near

    idx = vertices_near(mni, radius)
    d = np.linalg.norm(pial_coordinates()[idx].astype(float) - np.asarray(mni, dtype=float), axis=1)
    return idx, np.exp(-1.5 * (d / radius) ** 2)


def _regions(config: SimulationConfig) -> list[dict[str, Any]]:
    """Left regions then right homologues, with vertices, falloff and target peak r^2."""
    out = []
    for spec in LANGUAGE_REGIONS:
        for hemi in ("left", "right"):
            x, y, z = spec.mni
            mni = (x, y, z) if hemi == "left" else (-x, y, z)
            radius = spec.radius if hemi == "left" else spec.radius * RIGHT_RADIUS_SCALE
            peak = config.peak_r2 if hemi == "left" else config.peak_r2 * config.right_r2_scale
            idx, fall = _blob(mni, radius)
            out.append({"name": f"{'L' if hemi == 'left' else 'R'}_{spec.name}", "hemisphere": hemi, "mni": mni,
                        "radius": radius, "peak_r2": peak, "profile": spec.profile, "idx": idx, "falloff": fall})
    out.sort(key=lambda r: (r["hemisphere"] != "left", [s.name for s in LANGUAGE_REGIONS].index(r["name"][2:])))
    for k, reg in enumerate(out):
        reg["label"] = k + 1
    return out


def _amp(r2: np.ndarray | float) -> np.ndarray:
    r2 = np.asarray(r2, dtype=float)
    return np.sqrt(r2 / (1.0 - r2))


def _language_weights(regions, names, cov: np.ndarray, shared_field: np.ndarray):
    """Shared spatial weights (drivers x vertices), region labels, region of each vertex's max r^2."""
    weights = np.zeros((len(names), N_VERTICES))
    labels = np.zeros(N_VERTICES, dtype=np.int32)
    best = np.zeros(N_VERTICES)
    for reg in regions:
        idx, fall = reg["idx"], reg["falloff"]
        if idx.size == 0:
            continue
        profile = np.array([reg["profile"].get(n, 0.0) for n in names])
        w = profile[:, None] * (1.0 + 0.4 * shared_field[:, idx])  # drivers x n_idx
        sd = np.sqrt(np.einsum("iv,ij,jv->v", w, cov, w))
        target = _amp(reg["peak_r2"] * fall)
        weights[:, idx] += w * (target / np.where(sd > 0, sd, 1.0))
        r2 = reg["peak_r2"] * fall
        better = r2 > best[idx]
        labels[idx[better]] = reg["label"]
        best[idx[better]] = r2[better]
    return weights, labels


def _network_maps(specs: Sequence[NetworkSpec], r2: float) -> tuple[np.ndarray, list[int]]:
    maps = np.zeros((len(specs), N_VERTICES))
    for k, spec in enumerate(specs):
        for mni, radius, weight in spec.blobs:
            idx, fall = _blob(mni, radius)
            maps[k, idx] = np.maximum(maps[k, idx], weight * fall)
    sizes = [int((m > 0).sum()) for m in maps]
    return maps * _amp(r2), sizes


# --------------------------------------------------------------------------------------
# fMRI participants
# --------------------------------------------------------------------------------------


def _ar1(x: np.ndarray, rho: float) -> np.ndarray:
    """In-place stationary AR(1) along axis 0 of white unit-variance noise."""
    if rho <= 0:
        return x
    c = np.float32(math.sqrt(1.0 - rho * rho))
    r = np.float32(rho)
    for t in range(1, x.shape[0]):
        x[t] *= c
        x[t] += r * x[t - 1]
    return x


N_NOISE_COMPONENTS = 16


def _noise_maps(rng: np.random.Generator, config: SimulationConfig) -> np.ndarray:
    """Spatial maps of the structured noise (components x vertices, float32).

    Scaled so the structured part has variance ``structured_noise`` at every vertex.
    """
    maps = _smooth_fields(rng, N_NOISE_COMPONENTS, 12)
    maps /= np.linalg.norm(maps, axis=0, keepdims=True)
    return (maps * math.sqrt(config.structured_noise)).astype(np.float32)


def _fmri_noise(rng: np.random.Generator, layouts, tr: float, config: SimulationConfig, maps: np.ndarray) -> np.ndarray:
    """Unit-variance AR(1) noise with a smooth structured part, plus per-run offset and drift."""
    n_trs = sum(lay.n_trs for lay in layouts)
    rho = math.exp(-tr / config.noise_tau) if config.noise_tau > 0 else 0.0
    lam = config.structured_noise
    n_comp = maps.shape[0]
    rho_slow = math.exp(-tr / 8.0)
    data = rng.standard_normal((n_trs, N_VERTICES), dtype=np.float32)
    c = np.float32(math.sqrt(1.0 - rho * rho) * math.sqrt(1.0 - lam))
    r = np.float32(rho)
    start = 0
    for lay in layouts:
        block = data[start: start + lay.n_trs]
        comps = _ar1(rng.standard_normal((lay.n_trs, n_comp), dtype=np.float32), rho_slow) @ maps
        offset = rng.normal(0.0, 0.5, N_VERTICES).astype(np.float32)
        slope = rng.normal(0.0, 0.3, N_VERTICES).astype(np.float32)
        ramp = np.linspace(-1.0, 1.0, lay.n_trs, dtype=np.float32)
        # AR(1) recursion on the independent part, then add structure and drift row by row
        block[0] *= np.float32(math.sqrt(1.0 - lam))
        prev = block[0].copy()
        block[0] += comps[0] + offset + ramp[0] * slope
        for t in range(1, lay.n_trs):
            row = block[t]
            row *= c
            row += r * prev
            prev[:] = row
            row += comps[t]
            row += offset
            row += ramp[t] * slope
        start += lay.n_trs
    return data


def _cv_r2(x: np.ndarray, y: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Leave-one-run-out R^2 of ridge predictions (alpha = n_train) of every column of ``y``."""
    sse = np.zeros(y.shape[1])
    sst = np.zeros(y.shape[1])
    for k in np.unique(runs):
        test = runs == k
        xt = x[~test]
        beta = np.linalg.solve(xt.T @ xt + len(xt) * np.eye(x.shape[1]), xt.T @ y[~test])
        sse += ((y[test] - x[test] @ beta) ** 2).sum(0)
        sst += ((y[test] - y[test].mean(0)) ** 2).sum(0)
    return 1.0 - sse / np.where(sst > 0, sst, 1.0)


def _participant_modulation(rng: np.random.Generator, n_fields: int, spread: float) -> np.ndarray:
    return 1.0 + spread * _smooth_fields(rng, n_fields, 6)


def _r2_stats(r2: np.ndarray) -> dict[str, float]:
    r2 = np.asarray(r2, dtype=float)
    if r2.size == 0:
        return {}
    return {"median": _r(np.median(r2)), "p10": _r(np.percentile(r2, 10)), "p90": _r(np.percentile(r2, 90)),
            "max": _r(r2.max()), "mean": _r(r2.mean()), "share_below_0.1": _r((r2 < 0.1).mean())}


def _r(x: float) -> float:
    return float(round(float(x), 6))


# --------------------------------------------------------------------------------------
# MEG
# --------------------------------------------------------------------------------------


def meg_sensor_names() -> list[str]:
    """The 306 Elekta Neuromag channel names (magnetometer ...1, gradiometers ...2, ...3)."""
    names = []
    for group in range(1, 27):
        for loc in range(1, (2 if group == 8 else 4) + 1):
            for kind in (1, 2, 3):
                names.append(f"MEG{group:02d}{loc}{kind}")
    return names


def _helmet() -> np.ndarray:
    """102 sensor locations on the upper part of a unit sphere (synthetic helmet)."""
    n = 102
    k = np.arange(n) + 0.5
    z = 1.0 - k / n * 1.25  # from the vertex down to z = -0.25
    rad = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
    phi = np.pi * (3.0 - math.sqrt(5.0)) * k
    return np.c_[rad * np.cos(phi), rad * np.sin(phi), z]


def _meg_patterns() -> tuple[np.ndarray, np.ndarray]:
    """Component patterns (components x 306) and sensor positions (306 x 3)."""
    loc = _helmet()
    up = np.array([0.0, 0.0, 1.0])
    e1 = np.cross(up, loc)
    e1[np.linalg.norm(e1, axis=1) < 1e-9] = [1.0, 0.0, 0.0]
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(loc, e1)
    width = 0.35
    patterns = []
    for name, *_ in MEG_COMPONENTS:
        field = np.zeros(len(loc))
        grad = np.zeros((len(loc), 3))
        for centre, offset, sign in _MEG_SOURCES[name]:
            c = np.asarray(centre) / np.linalg.norm(centre)
            o = np.asarray(offset, dtype=float)
            o = o - c * (o @ c)
            o = 0.25 * o / np.linalg.norm(o)
            for q, s in ((c + o, sign), (c - o, -sign)):
                diff = loc - q
                g = np.exp(-(diff ** 2).sum(axis=1) / (2 * width ** 2))
                field += s * g
                grad += (s * g)[:, None] * (-diff / width ** 2)
        gx = (grad * e1).sum(axis=1) * width
        gy = (grad * e2).sum(axis=1) * width
        pat = np.stack([field, gx, gy], axis=1).reshape(-1)  # location-major: mag, grad, grad
        patterns.append(pat / np.abs(pat).max())
    positions = np.repeat(loc, 3, axis=0)
    return np.asarray(patterns), positions


def _gamma_kernel(t: np.ndarray, peak: float, shape: float) -> np.ndarray:
    t = np.asarray(t, dtype=float)
    x = np.clip(t / peak, 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(x > 0, x ** shape * np.exp(shape * (1.0 - x)), 0.0)
    return k


def _meg_word_drivers(wf) -> np.ndarray:
    content = wf["is_content"].to_numpy(dtype=float)
    lf = wf["log_freq"].to_numpy(dtype=float)
    cols = {
        "visual_onset": np.ones(len(wf)),
        "word_length": wf["z_length"].to_numpy(dtype=float),
        "content": content - content.mean(),
        "log_freq": -(lf - lf.mean()) / (lf.std() or 1.0),
    }
    return np.stack([cols[name] for name, *_ in MEG_COMPONENTS], axis=1)


def _meg_participant(rng, drivers, onsets, run_codes, patterns, responsiveness, config) -> tuple[np.ndarray, dict]:
    """One participant's epochs (words x sensors x bins, float32) and their gains / latency shifts."""
    n_words, n_sens = drivers.shape[0], patterns.shape[1]
    t = (np.arange(MEG_BINS) + 0.5) * MEG_BIN_WIDTH
    gains = np.exp(rng.normal(0.0, 0.25, len(MEG_COMPONENTS))) * responsiveness
    shifts = rng.normal(0.0, 0.012, len(MEG_COMPONENTS))
    # soa to previous word in the same run (spill-over of its late response)
    prev_ok = np.r_[False, run_codes[1:] == run_codes[:-1]]
    soa = np.r_[np.inf, np.diff(onsets)]
    terms = np.zeros((n_words, MEG_BINS, len(MEG_COMPONENTS)))
    spill = prev_ok & (soa < 1.5)
    lag_prev = t[None, :] + np.where(np.isfinite(soa), soa, 0.0)[:, None]
    for c, (name, _, peak, shape, rel) in enumerate(MEG_COMPONENTS):
        amp = rel * gains[c] * (1.0 if name == "visual_onset" else config.meg_snr)
        a = drivers[:, c] * amp
        terms[:, :, c] = a[:, None] * _gamma_kernel(t, peak + shifts[c], shape)[None, :]
        # the previous word's late response at lag t + soa (same run, close enough to matter)
        a_prev = np.r_[0.0, a[:-1]] * spill
        terms[:, :, c] += a_prev[:, None] * _gamma_kernel(lag_prev, peak + shifts[c], shape)
    signal = np.matmul(terms.astype(np.float32), patterns.astype(np.float32))  # words x bins x sensors
    # noise: structured (smooth sensor components, AR(1) over bins) + white + slow drift
    n_comp = 24
    comp_pat, _ = _random_sensor_patterns(rng, n_comp)
    comps = rng.standard_normal((n_words, n_comp, MEG_BINS), dtype=np.float32)
    rho = 0.8
    for b in range(1, MEG_BINS):
        comps[:, :, b] = rho * comps[:, :, b - 1] + math.sqrt(1 - rho * rho) * comps[:, :, b]
    structured = np.matmul(comps.transpose(0, 2, 1), (comp_pat * math.sqrt(0.6)).astype(np.float32))
    white = rng.standard_normal((n_words, MEG_BINS, n_sens), dtype=np.float32) * np.float32(math.sqrt(0.4))
    drift = (np.linspace(-1.0, 1.0, n_words)[:, None] * rng.normal(0.0, 0.3, n_sens)[None, :]).astype(np.float32)
    data = signal + structured + white + drift[:, None, :]
    info = {"gains": [_r(g) for g in gains], "latency_shifts_s": [_r(s) for s in shifts]}
    return np.ascontiguousarray(data.transpose(0, 2, 1)), info


def _random_sensor_patterns(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` smooth random sensor patterns (n x 306) with unit mean square over components."""
    loc = _helmet()
    centres = rng.standard_normal((n, 3))
    centres[:, 2] = np.abs(centres[:, 2])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    d2 = ((loc[None, :, :] - centres[:, None, :]) ** 2).sum(axis=2)
    pats = np.exp(-d2 / (2 * 0.4 ** 2)) * rng.choice([-1.0, 1.0], size=(n, 1))
    pats = np.repeat(pats, 3, axis=1) * np.tile([1.0, 0.6, 0.6], len(loc))[None, :]
    pats /= np.sqrt((pats ** 2).sum(axis=0, keepdims=True))  # unit structured variance per sensor
    return pats, loc


# --------------------------------------------------------------------------------------
# Experiment builders
# --------------------------------------------------------------------------------------


def _participant_ids(n_fmri: int, n_meg: int, n_shared: int) -> tuple[list[str], list[str]]:
    fmri = [f"sub-{i + 1:02d}" for i in range(n_fmri)]
    meg = fmri[:n_shared] + [f"sub-{n_fmri + i + 1:02d}" for i in range(n_meg - n_shared)]
    return fmri, meg


def _responsiveness(seed: int, experiment: str, pid: str) -> float:
    return float(np.exp(_rng(seed, experiment, "person", pid).normal(0.0, 0.15)))


def _simulate_fmri(
    experiment: str, pids: Sequence[str], layouts, tr: float, drivers: np.ndarray, names: Sequence[str],
    regions, weights: np.ndarray, net_tc: np.ndarray | None, net_maps: np.ndarray | None, net_names: Sequence[str],
    config: SimulationConfig, progress: _Progress, step: float,
):
    """fMRI arrays of all participants + measured SNR."""
    from brainviz.data.dataset import FMRIRecording, Run, Space

    _smoother()  # build the cached mesh operator before the worker threads need it
    kept, run_of_tr = _kept_mask(layouts), _run_of_tr(layouts)
    planted = np.any(weights != 0, axis=0)
    if net_maps is not None:
        planted |= np.any(net_maps != 0, axis=0)
    pidx = np.flatnonzero(planted)
    null = np.flatnonzero(~planted)
    region_of = np.zeros(N_VERTICES, dtype=int)
    for reg in regions:  # gains apply per region (last wins on the rare overlaps)
        region_of[reg["idx"]] = reg["label"]
    xk = _detrend_kept(drivers, run_of_tr, kept)  # network time courses are driver columns
    run_k = run_of_tr[kept]
    space = Space("fsaverage5")
    runs = [Run(lay.name, lay.n_trs, 0.0) for lay in layouts]
    null_probe = null[:: max(1, len(null) // 2000)]
    region_in_planted = region_of[pidx]
    # smooth spatial topographies of the structured ("physiological") noise, shared by the
    # participants of an experiment; their time courses are participant-specific
    noise_maps = _noise_maps(_rng(config.seed, experiment, "noise-maps"), config)
    cv_participants = set(pids[:N_CV_PARTICIPANTS])

    def one(pid: str) -> dict[str, Any]:
        rng = _rng(config.seed, experiment, "fmri", pid)
        resp = _responsiveness(config.seed, experiment, pid)
        gains = {reg["label"]: float(np.exp(rng.normal(0.0, 0.25))) * resp for reg in regions}
        gain_v = np.zeros(N_VERTICES)
        for lab, g in gains.items():
            gain_v[region_of == lab] = g
        mod = _participant_modulation(rng, len(names), 0.3)
        signal = drivers @ (weights[:, pidx] * gain_v[pidx] * mod[:, pidx])
        net_gain = None
        if net_maps is not None and net_tc is not None:
            net_gain = np.exp(rng.normal(0.0, 0.25, net_maps.shape[0])) * resp
            net_mod = _participant_modulation(rng, net_maps.shape[0], 0.25)
            signal += net_tc @ (net_maps[:, pidx] * net_gain[:, None] * net_mod[:, pidx])
        data = _fmri_noise(rng, layouts, tr, config, noise_maps)
        data[:, pidx] += signal.astype(np.float32)
        # measured SNR on the kept, per-run detrended TRs (what the analyses see)
        s_k = _detrend_kept(signal, run_of_tr, kept)
        d_k = _detrend_kept(data[:, pidx], run_of_tr, kept)
        num = (s_k * d_k).sum(0)
        den = np.sqrt((s_k ** 2).sum(0) * (d_k ** 2).sum(0))
        r2 = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0) ** 2
        info = {
            "responsiveness": _r(resp),
            "region_gains": {reg["name"]: _r(gains[reg["label"]]) for reg in regions},
            "median_signal_r2": _r(np.median(r2)),
        }
        if net_gain is not None:
            info["network_gains"] = {n: _r(g) for n, g in zip(net_names, net_gain)}
        out = {"recording": FMRIRecording(pid, data, tr, runs, space), "info": info, "r2": r2}
        if pid in cv_participants:  # the costlier checks on the first participants only
            n_k = _detrend_kept(data[:, null_probe], run_of_tr, kept)
            out["ve_planted"] = _cv_r2(xk, d_k, run_k)
            out["ve_null"] = _cv_r2(xk, n_k, run_k)
            out["ar1"] = float(np.mean((n_k[1:] * n_k[:-1]).sum(0) / (n_k ** 2).sum(0)))
        return out

    recordings, info, results = {}, {}, []
    for pid, res in zip(pids, _ordered_map(one, pids)):
        recordings[pid] = res.pop("recording")
        info[pid] = res["info"]
        results.append(res)
        progress.step(step, f"{experiment}: fMRI {pid}")
    r2_all = [res["r2"] for res in results]
    r2_region = {reg["name"]: [res["r2"][region_in_planted == reg["label"]] for res in results] for reg in regions}
    if net_maps is not None:
        r2_region["networks_outside_language_regions"] = [res["r2"][region_in_planted == 0] for res in results]
    ve_planted = [res["ve_planted"] for res in results if "ve_planted" in res]
    ve_null = [res["ve_null"] for res in results if "ve_null" in res]
    ar1 = [res["ar1"] for res in results if "ar1" in res]
    r2_cat = np.concatenate(r2_all)
    measured = {
        "signal_r2_planted": _r2_stats(r2_cat),
        "signal_r2_by_region": {k: _r2_stats(np.concatenate(v)) for k, v in r2_region.items()},
        "variance_explained_by_drivers": {
            "note": ("leave-one-run-out cross-validated R^2 of a ridge fit (alpha = number of training TRs, "
                     "unit-variance regressors) of each vertex (kept TRs, detrended within run) on the drivers"),
            "participants": sorted(cv_participants),
            "null_vertices_probed": int(null_probe.size),
            "n_regressors": int(xk.shape[1]),
            "n_kept_trs": int(xk.shape[0]),
            "planted": _r2_stats(np.concatenate(ve_planted)),
            "null": _r2_stats(np.concatenate(ve_null)),
        },
        "noise_lag1_autocorrelation": _r(np.mean(ar1)),
        "n_planted_vertices": int(pidx.size),
    }
    return recordings, info, measured, planted


def _n_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        n = os.cpu_count() or 1
    return max(1, min(2, n))


def _ordered_map(fn: Callable[[Any], Any], items: Sequence[Any]):
    """``map(fn, items)`` on up to 2 threads (numpy releases the GIL); results in input order.

    Each item draws from its own random stream, so the output does not depend on scheduling.
    """
    workers = _n_workers()
    if workers == 1 or len(items) < 2:
        for item in items:
            yield fn(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = []
        it = iter(items)
        for item in it:  # keep at most workers + 1 results in flight (memory)
            futures.append(pool.submit(fn, item))
            if len(futures) > workers:
                yield futures.pop(0).result()
        for fut in futures:
            yield fut.result()


def _linguistic_stimulus(stim):
    """Stimulus + ``pos, is_content, length, log_freq`` (annotate_stimulus) and the word table.

    spaCy runs once per story: the POS tags of the same pass (identical to ``tag_words``) are
    handed to ``annotate_stimulus``, which keeps an existing ``pos`` column.
    """
    from brainviz.data.features import annotate_stimulus

    parse = _parse_stories(stim)
    stim = stim.copy()
    stim["pos"] = parse[0]
    stim = annotate_stimulus(stim)
    return stim, word_features(stim, parse)


def _driver_specs(experiment: str) -> list[tuple[str, str, str]]:
    return list(BASE_DRIVERS) + (list(LISTENING_DRIVERS) if experiment == "listening" else [])


def _common_ground_truth(experiment, config, names, specs, regions, drivers, neural, scales, layouts, tr, titles):
    corr = np.corrcoef(drivers[_kept_mask(layouts)].T)
    return {
        "simulated": True,
        "simulator_version": SIMULATOR_VERSION,
        "experiment": experiment,
        "config": config.to_dict(),
        "titles": titles,
        "tr": tr,
        "runs": [{"name": lay.name, "n_trs": lay.n_trs, "kept_trs": [TRIM_START, lay.n_trs - TRIM_END]} for lay in layouts],
        "tr_runs": [lay.name for lay in layouts for _ in range(lay.n_trs)],
        "driver_specs": [{"name": n, "kind": k, "description": d, "bold_scale": _r(s)} for (n, k, d), s in zip(specs, scales)],
        "driver_names": list(names),
        "driver_correlations_kept_trs": [[_r(v) for v in row] for row in corr],
        "regions": [
            {"label": reg["label"], "name": reg["name"], "hemisphere": reg["hemisphere"],
             "mni": [float(v) for v in reg["mni"]], "radius_mm": _r(reg["radius"]), "peak_r2": _r(reg["peak_r2"]),
             "n_vertices": int(reg["idx"].size), "drivers": {k: float(v) for k, v in reg["profile"].items()}}
            for reg in regions
        ],
        "categories": list(CATEGORIES),
        "generative": {
            "window_s": config.window,
            "recency": f"exp(-(t - onset) / {config.recency_tau})",
            "neural_grid_s": GRID_DT,
            "hrf": "nilearn spm_hrf (time_length 32 s), causal convolution, sampled at TR onsets",
            "driver_scaling": "each BOLD driver divided by its s.d. over kept TRs (20 / 15 TR trim, per-run linear detrend)",
            "region_falloff": "target r^2 = peak_r2 * exp(-1.5 (d / radius)^2)",
            "shared_weight_modulation": "profile * (1 + 0.4 * smooth field)",
            "participant_modulation": "region gain lognormal(0, 0.25) x responsiveness lognormal(0, 0.15) x (1 + 0.3 smooth field)",
            "noise": {
                "ar1_coefficient": _r(math.exp(-tr / config.noise_tau) if config.noise_tau > 0 else 0.0),
                "structured_share": config.structured_noise,
                "structured_components": 16,
                "variance_per_vertex": 1.0,
                "drift": "per-run offset N(0, 0.5) and linear ramp N(0, 0.3) per vertex",
            },
            "rarity": f"content x sigmoid((-log_freq - {RARITY_THRESHOLD}) / {RARITY_WIDTH})",
            "length_z": f"(length - {LENGTH_MEAN}) / {LENGTH_SD}",
            "lead_in_trs": LEAD_IN_TRS[experiment],
            "tail_trs": TAIL_TRS,
            "trimmed_by_preprocessing": [TRIM_START, TRIM_END],
        },
    }


def _save_experiment(target: Path, dataset, gt_json: dict, arrays: dict[str, np.ndarray], word_table, overwrite: bool) -> Path:
    """Save dataset + ground truth into a temp folder beside ``target``, then rename (atomic)."""
    from brainviz._io import json_default, atomic_dir

    with atomic_dir(target, overwrite=overwrite) as tmp:
        dataset.save(tmp, overwrite=True)
        gt = tmp / GROUND_TRUTH_DIR
        gt.mkdir()
        for name, arr in sorted(arrays.items()):
            np.save(gt / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
        word_table.to_csv(gt / "word_features.tsv", sep="\t", index=False, float_format="%.10g", lineterminator="\n")
        gt_json = dict(gt_json)
        gt_json["files"] = sorted([f"{n}.npy" for n in arrays] + ["word_features.tsv", GROUND_TRUTH_JSON])
        (gt / GROUND_TRUTH_JSON).write_text(json.dumps(gt_json, indent=2, sort_keys=True, default=json_default) + "\n")
    dataset.path = target
    return target


def _build_reading(target: Path, config: SimulationConfig, progress: _Progress, overwrite: bool, weight: dict) -> Path:
    from brainviz.data.dataset import Dataset, DatasetMeta, MEGRecording

    preset = PRESETS[config.preset]
    stim, layouts, titles = _reading_stimulus(preset["reading_words"], READING_TR)
    stim, wf = _linguistic_stimulus(stim)
    progress.step(weight["prep"], "reading: words annotated")
    specs = _driver_specs("reading")
    names = [s[0] for s in specs]
    drivers, neural, scales = _build_drivers(stim, wf, layouts, READING_TR, names, config)
    regions = _regions(config)
    cov = np.cov(_detrend_kept(drivers, _run_of_tr(layouts), _kept_mask(layouts)).T)
    shared = _smooth_fields(_rng(config.seed, "reading", "shared-weights"), len(names), 6)
    weights, labels = _language_weights(regions, names, cov, shared)
    fmri_ids, meg_ids = _participant_ids(preset["reading_fmri"], preset["reading_meg"], preset["reading_shared"])
    recordings, pinfo, measured, planted = _simulate_fmri(
        "reading", fmri_ids, layouts, READING_TR, drivers, names, regions, weights, None, None, [],
        config, progress, weight["fmri"],
    )
    # MEG
    patterns, positions = _meg_patterns()
    meg_drivers = _meg_word_drivers(wf)
    onsets = stim["onset"].to_numpy(dtype=float)
    run_codes = stim["run"].astype(str).to_numpy()
    t = (np.arange(MEG_BINS) + 0.5) * MEG_BIN_WIDTH
    kernels = np.stack([_gamma_kernel(t, peak, shape) for _, _, peak, shape, _ in MEG_COMPONENTS])
    sensors = meg_sensor_names()
    megs, meg_info = {}, {}

    def one_meg(pid: str):
        resp = _responsiveness(config.seed, "reading", pid)
        data, info = _meg_participant(_rng(config.seed, "reading", "meg", pid), meg_drivers, onsets, run_codes,
                                      patterns, resp, config)
        return data, {**info, "responsiveness": _r(resp)}

    for pid, (data, info) in zip(meg_ids, _ordered_map(one_meg, meg_ids)):
        megs[pid] = MEGRecording(pid, data, MEG_BIN_WIDTH, sensors, np.arange(len(stim)))
        meg_info[pid] = info
        progress.step(weight["meg"], f"reading: MEG {pid}")
    meta = DatasetMeta(
        name="simulated-reading", simulated=True, modality="reading",
        source=f"brainviz simulator v{SIMULATOR_VERSION} (preset {config.preset}, seed {config.seed})",
        licence="CC0-1.0",
        citation=("Simulated with brainviz, modelled on Wehbe et al. (2014) PLoS ONE 9(11):e112575 and "
                  "Schwartz, Toneva & Wehbe (2019) NeurIPS 'Inducing brain-relevant bias in natural language processing models'."),
        description=(f"Simulated RSVP reading of '{titles['reading']}' (0.5 s per word, {N_READING_RUNS} runs, TR {READING_TR} s): "
                     f"{len(fmri_ids)} fMRI participants on fsaverage5, {len(meg_ids)} MEG participants (306 sensors, "
                     f"{MEG_BINS} x {int(MEG_BIN_WIDTH * 1000)} ms bins per word), {len(set(fmri_ids) & set(meg_ids))} in both. "
                     "Planted effects and drivers are in ground_truth/."),
    )
    dataset = Dataset(meta, stim, recordings, megs)
    gt = _common_ground_truth("reading", config, names, specs, regions, drivers, neural, scales, layouts, READING_TR, titles)
    gt.update({
        "modality": "reading",
        "participants": pinfo,
        "networks": [],
        "measured": measured,
        "meg": {
            "participants": meg_info,
            "shared_with_fmri": sorted(set(fmri_ids) & set(meg_ids)),
            "bin_width_s": MEG_BIN_WIDTH,
            "n_bins": MEG_BINS,
            "epoch": "bins cover 0-500 ms after word onset; bin b is centred at (b + 0.5) * 25 ms",
            "components": [{"name": n, "driver": d, "peak_latency_s": p, "gamma_shape": s, "relative_amplitude": a}
                           for n, d, p, s, a in MEG_COMPONENTS],
            "sensor_layout": "synthetic helmet (Fibonacci points on a unit sphere); names follow Elekta Neuromag "
                             "(...1 magnetometer, ...2 / ...3 planar gradiometers)",
            "noise": "24 smooth sensor components (AR(1) over bins, rho 0.8, 60% of variance) + white sensor noise (40%) + linear drift over words",
            "snr": config.meg_snr,
        },
    })
    arrays = {
        "planted_mask": planted,
        "region_labels": labels,
        "drivers": drivers.astype(np.float32),
        "neural_drivers": neural.astype(np.float32),
        "spatial_weights": weights.astype(np.float32),
        "meg_patterns": patterns.astype(np.float32),
        "meg_kernels": kernels.astype(np.float32),
        "meg_word_drivers": meg_drivers.astype(np.float32),
        "meg_sensor_positions": positions.astype(np.float32),
    }
    out = _save_experiment(target, dataset, gt, arrays, wf, overwrite)
    progress.step(weight["save"], "reading: saved")
    return out


def _build_listening(target: Path, config: SimulationConfig, progress: _Progress, overwrite: bool, weight: dict) -> Path:
    from brainviz.data.dataset import Dataset, DatasetMeta

    preset = PRESETS[config.preset]
    stim, layouts, titles = _listening_stimulus(preset["listening_words"], LISTENING_TR, config.seed)
    stim, wf = _linguistic_stimulus(stim)
    progress.step(weight["prep"], "listening: words annotated")
    specs = _driver_specs("listening")
    names = [s[0] for s in specs]
    drivers, neural, scales = _build_drivers(stim, wf, layouts, LISTENING_TR, names, config)
    regions = _regions(config)
    run_of_tr, kept = _run_of_tr(layouts), _kept_mask(layouts)
    cov = np.cov(_detrend_kept(drivers, run_of_tr, kept).T)
    shared = _smooth_fields(_rng(config.seed, "listening", "shared-weights"), len(names), 6)
    weights, labels = _language_weights(regions, names, cov, shared)
    net_specs = NETWORK_SPECS[: config.n_networks]
    net_maps, net_sizes = _network_maps(net_specs, config.network_r2)
    net_tc = drivers[:, [names.index(s.driver) for s in net_specs]]
    net_neural = neural[:, [names.index(s.driver) for s in net_specs]]
    pids = [f"sub-{i + 1:02d}" for i in range(preset["listening_fmri"])]
    recordings, pinfo, measured, planted = _simulate_fmri(
        "listening", pids, layouts, LISTENING_TR, drivers, names, regions, weights, net_tc, net_maps,
        [s.name for s in net_specs], config, progress, weight["fmri"],
    )
    words_per_s = []
    for lay in layouts:
        o = stim["onset"].to_numpy()[lay.rows]
        d = stim["duration"].to_numpy()[lay.rows]
        words_per_s.append(_r(len(o) / (o[-1] + d[-1] - o[0])))
    meta = DatasetMeta(
        name="simulated-listening", simulated=True, modality="listening",
        source=f"brainviz simulator v{SIMULATOR_VERSION} (preset {config.preset}, seed {config.seed})",
        licence="CC0-1.0",
        citation=("Simulated with brainviz, modelled on the Narratives collection: Nastase et al. (2021) "
                  "'The Narratives fMRI dataset for evaluating models of naturalistic language comprehension', Scientific Data 8:250."),
        description=(f"Simulated listening to two spoken stories ('{titles['listening_1']}', '{titles['listening_2']}'), "
                     f"one run each, TR {LISTENING_TR} s, {len(pids)} participants on fsaverage5 who heard both. "
                     f"Planted language regions and {len(net_specs)} functional networks are in ground_truth/."),
    )
    dataset = Dataset(meta, stim, recordings, {})
    gt = _common_ground_truth("listening", config, names, specs, regions, drivers, neural, scales, layouts, LISTENING_TR, titles)
    tc_corr = np.corrcoef(net_tc[kept].T) if len(net_specs) > 1 else np.ones((1, 1))
    gt.update({
        "modality": "listening",
        "participants": pinfo,
        "speech_rate_words_per_s": dict(zip([lay.name for lay in layouts], words_per_s)),
        "networks": [
            {"index": k, "name": s.name, "driver": s.driver, "n_vertices": n,
             "peak_r2": _r(config.network_r2),
             "blobs": [{"mni": [float(v) for v in mni], "radius_mm": float(rad), "weight": float(w)} for mni, rad, w in s.blobs]}
            for k, (s, n) in enumerate(zip(net_specs, net_sizes))
        ],
        "network_timecourse_correlations": [[_r(v) for v in row] for row in np.atleast_2d(tc_corr)],
        "measured": measured,
        "speech_timing": "duration (0.09 + 0.15 * syllables) s x lognormal(0, 0.12); gaps 0.03 s, 0.18 s after , ; : -, "
                         "0.40 s after . ! ?, 0.75 s at paragraph ends (x lognormal(0, 0.25))",
    })
    arrays = {
        "planted_mask": planted,
        "region_labels": labels,
        "drivers": drivers.astype(np.float32),
        "neural_drivers": neural.astype(np.float32),
        "spatial_weights": weights.astype(np.float32),
        "network_maps": net_maps.astype(np.float32),
        "network_timecourses": net_tc.astype(np.float32),
        "network_neural_timecourses": net_neural.astype(np.float32),
    }
    out = _save_experiment(target, dataset, gt, arrays, wf, overwrite)
    progress.step(weight["save"], "listening: saved")
    return out


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def _weights(config: SimulationConfig, experiments: Sequence[str]) -> tuple[dict[str, dict[str, float]], float]:
    p = PRESETS[config.preset]
    full = p["reading_words"] is None
    w = {
        "reading": {"prep": 4.0, "fmri": 1.0 if full else 0.3, "meg": 1.2 if full else 0.2, "save": 6.0 if full else 1.0},
        "listening": {"prep": 3.0, "fmri": 0.7 if full else 0.3, "save": 6.0 if full else 1.0, "meg": 0.0},
    }
    total = 0.0
    for e in experiments:
        n_fmri = p["reading_fmri"] if e == "reading" else p["listening_fmri"]
        n_meg = p["reading_meg"] if e == "reading" else 0
        total += w[e]["prep"] + n_fmri * w[e]["fmri"] + n_meg * w[e]["meg"] + w[e]["save"]
    return w, total


def _run(out_dir: Path, config: SimulationConfig, experiments: Sequence[str], progress: ProgressFn | None, overwrite: bool) -> dict[str, Path]:
    targets = {e: out_dir / e for e in experiments}
    if not overwrite:
        for e, path in targets.items():
            if path.exists():
                raise FileExistsError(f"{path}: already exists (choose another output folder or pass overwrite=True / --overwrite)")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    weights, total = _weights(config, experiments)
    prog = _Progress(progress, total)
    prog.report("starting")
    try:
        out = {}
        for e in experiments:
            build = _build_reading if e == "reading" else _build_listening
            out[e] = build(targets[e], config, prog, overwrite, weights[e])
        prog.done = prog.total
        prog.report("done")
        return out
    finally:
        prog.close()


def simulate(
    out_dir: str | os.PathLike,
    config: SimulationConfig | None = None,
    progress: ProgressFn | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write the simulated ``reading`` and ``listening`` datasets into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Parent folder; the datasets become ``out_dir/reading`` and ``out_dir/listening``.
    config : SimulationConfig, optional
        Preset, seed and generative knobs (default: the default preset with seed 0).
    progress : callable, optional
        ``progress(fraction, message)`` called as the work advances. Without it a tqdm bar is
        shown when stderr is a terminal.
    overwrite : bool
        Replace existing dataset folders (each only once its replacement is complete).

    Returns
    -------
    dict
        ``{"reading": Path, "listening": Path}``.

    Raises
    ------
    FileExistsError
        A target folder exists and ``overwrite`` is false (checked before any work).
    """
    config = config if config is not None else SimulationConfig()
    if not isinstance(config, SimulationConfig):
        raise ConfigError(f"config must be a SimulationConfig, got {type(config).__name__}")
    return _run(Path(out_dir), config, EXPERIMENTS, progress, overwrite)


DEFAULT_CONFIG = SimulationConfig()  # what ensure_default_dataset builds (default preset, seed 0)


def _complete(path: Path) -> bool:
    return (path / "dataset.json").is_file() and (path / GROUND_TRUTH_DIR / GROUND_TRUTH_JSON).is_file()


def ensure_default_dataset(progress: ProgressFn | None = None) -> dict[str, Path]:
    """Build the default preset (seed 0) into :func:`brainviz.paths.default_dataset_dir` if missing.

    Safe to call from several processes at once: building happens under a file lock and the
    datasets appear atomically; a caller that waited finds them complete and returns.
    """
    from brainviz import paths
    from brainviz.cache import Cache

    root = paths.default_dataset_dir()
    targets = {e: root / e for e in EXPERIMENTS}
    if all(_complete(p) for p in targets.values()):
        if progress is not None:
            progress(1.0, "default dataset ready")
        return targets
    with Cache(paths.cache_dir()).lock("datasets", root.name):
        missing = [e for e, p in targets.items() if not _complete(p)]
        if missing:
            _run(root, DEFAULT_CONFIG, missing, progress, overwrite=True)
        elif progress is not None:
            progress(1.0, "default dataset ready")
    return targets


def load_ground_truth(dataset_or_path: Any) -> dict[str, Any]:
    """The planted ground truth of a simulated dataset.

    Parameters
    ----------
    dataset_or_path : Dataset or path
        A loaded :class:`~brainviz.data.dataset.Dataset`, its folder, or its ``ground_truth``
        folder.

    Returns
    -------
    dict
        The keys of ``ground_truth.json`` plus one entry per array file (``planted_mask``,
        ``region_labels``, ``drivers``, ``neural_drivers``, ``spatial_weights``, ...; listening:
        ``network_maps``, ``network_timecourses``; reading: ``meg_*``), ``word_features``
        (a DataFrame) and ``path``.

    Raises
    ------
    DatasetError
        When the dataset has no ground truth (real data, or a simulated dataset not on disk).
    """
    from brainviz.data.dataset import DatasetError

    path = getattr(dataset_or_path, "path", dataset_or_path)
    if path is None:
        raise DatasetError("this dataset is not saved on disk, so it has no ground_truth/ folder", field="ground_truth")
    path = Path(path)
    gt = path if (path / GROUND_TRUTH_JSON).is_file() else path / GROUND_TRUTH_DIR
    meta_file = gt / GROUND_TRUTH_JSON
    if not meta_file.is_file():
        raise DatasetError(
            "no ground truth here: only datasets made by the simulator (python -m brainviz simulate) have a "
            "ground_truth/ folder with ground_truth.json",
            file=meta_file, field="ground_truth",
        )
    try:
        out: dict[str, Any] = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"not valid JSON ({exc})", file=meta_file) from None
    for f in sorted(gt.glob("*.npy")):
        try:
            out[f.stem] = np.load(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DatasetError(f"unreadable .npy file ({exc})", file=f) from None
    table = gt / "word_features.tsv"
    if table.is_file():
        import pandas as pd

        out["word_features"] = pd.read_csv(table, sep="\t", keep_default_na=False, dtype={"word": str, "run": str})
    out["path"] = gt
    return out


__all__ = [
    "SimulationConfig", "simulate", "ensure_default_dataset", "load_ground_truth", "PRESETS",
    "CATEGORY_LEXICON", "CATEGORIES", "LANGUAGE_REGIONS", "NETWORK_SPECS", "word_category",
    "word_features", "neural_drivers", "meg_sensor_names", "read_story",
]
