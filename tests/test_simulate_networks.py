"""The drivers of the planted listening networks (pure functions; a few seconds).

* sentence ends, proper-noun share and direct-speech share are exact functions of the last
  few seconds of words (short window), 0 in silence;
* control networks follow a seeded random envelope that is not a function of the words;
* every coupled network names a driver the simulator computes, every control none.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainviz.data.simulate import drivers as drv
from brainviz.data.simulate.space import NETWORK_SPECS


def _words(words, pos, run="s1"):
    return pd.DataFrame({
        "word": words, "pos": pos, "run": run, "category": "function", "is_content": False, "z_length": 0.0,
        "z_log_freq": 0.0, "rarity": 0.0, "depth": 1, "role": "other", "repeat_back": 0,
    })


def test_word_flags_for_sentence_ends_names_and_dialogue():
    wf = _words(['Anna', 'said,', '"Come', 'here.', 'Now!"', 'He', 'ran.'],
                ["PROPN", "VERB", "VERB", "ADV", "ADV", "PRON", "VERB"])
    a = drv._word_arrays(wf)
    assert a["sent_end"].tolist() == [0, 0, 0, 1, 1, 0, 1]
    assert a["propn"].tolist() == [1, 0, 0, 0, 0, 0, 0]
    assert a["dialogue"].tolist() == [0, 0, 1, 1, 1, 0, 0]
    # a one-word quotation opens and closes on the same word; a new run starts outside quotes
    wf2 = pd.concat([_words(['"Yes."', 'she', '"No'], ["INTJ", "PRON", "INTJ"]),
                     _words(['then', 'left.'], ["ADV", "VERB"], run="s2")], ignore_index=True)
    assert drv._word_arrays(wf2)["dialogue"].tolist() == [1, 0, 1, 0, 0]


def test_network_drivers_use_the_short_window_and_are_zero_in_silence():
    wf = _words(["The", "dog", "barked.", "Max", "Smith", "laughed."], ["DET", "NOUN", "VERB", "PROPN", "PROPN", "VERB"])
    arrays = drv._word_arrays(wf)
    onsets = np.array([1.0, 1.3, 1.6, 6.0, 6.3, 6.6])
    times = np.array([0.5, 1.7, 2.0, 4.0, 4.7, 6.5, 6.7, 20.0])
    names = ["sentence_end", "propn_share", "word_rate"]
    out = drv.neural_drivers(times, onsets, arrays, names, window=10.1, tau=2.5)
    se, pn, wr = out.T
    # the sentence end at 1.6 s counts while it is in the last NETWORK_WINDOW s, with NETWORK_TAU recency
    np.testing.assert_allclose(se[1], np.exp(-0.1 / drv.NETWORK_TAU))
    assert se[3] > 0 and se[4] == 0.0  # 4.7 s: the end at 1.6 s is more than 3 s back
    assert se[0] == 0 and pn[0] == 0 and pn[-1] == 0 and se[-1] == 0  # silence before and long after
    # proper-noun share minus the run's share (2 of 6 words)
    r = np.exp(-(6.5 - onsets[3:5]) / drv.NETWORK_TAU)
    np.testing.assert_allclose(pn[5], r.sum() / r.sum() - 2 / 6)
    assert pn[1] < 0  # the first sentence has no proper noun
    # word_rate keeps the long window: still > 0 at 4.7 s
    assert wr[4] > 0
    # asking for the short drivers alone with their own window gives the same values
    alone = drv.neural_drivers(times, onsets, arrays, names[:2], drv.NETWORK_WINDOW, drv.NETWORK_TAU)
    np.testing.assert_allclose(alone, out[:, :2])


def test_control_envelopes_are_seeded_random_and_positive():
    rng = np.random.default_rng
    a = drv._control_neural(rng(1), 400, 6.0)
    b = drv._control_neural(rng(1), 400, 6.0)
    c = drv._control_neural(rng(2), 400, 6.0)
    fast = drv._control_neural(rng(1), 4000, 1.0)
    slow = drv._control_neural(rng(1), 4000, 6.0)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and (a > 0).all()

    def lag1(x):
        x = np.log(x) - np.log(x).mean()
        return float((x[1:] * x[:-1]).sum() / (x * x).sum())

    assert lag1(slow) > lag1(fast) > 0.5


def test_network_specs_name_known_drivers():
    specs = drv.driver_specs("listening", [s.driver for s in NETWORK_SPECS if s.role != "control"])
    names = {sp[0] for sp in specs}
    roles = [s.role for s in NETWORK_SPECS]
    assert roles.count("coupled") >= 4 and roles.count("control") == 2
    for s in NETWORK_SPECS:
        if s.role == "control":
            assert s.driver not in names and s.control_tau > 0
        else:
            assert s.driver in names
    # the reading experiment has no network drivers
    assert all(sp[1] != drv.NETWORK for sp in drv.driver_specs("reading"))
