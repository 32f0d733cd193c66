"""core.consensus.model_scores and core.holds._shares: the model's score and share and the
net score of many holds at once are, float for float, what model_score_of, model_share and
net_score give one hold at a time: infinities, NaN, -0.0, subnormal and huge edges, weights
that sum to nothing, agents that did not vote."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.agents.base import Vote
from core.consensus import (
    ConsensusConfig,
    model_score_of,
    model_scores,
    model_share,
    net_score,
    shares_of,
    weighing,
)
from core.holds import _shares
from core.models.policy import PolicyConfig
from core.types import Action

ODD = [-math.inf, math.inf, math.nan, -0.0, 0.0, 5e-324, -5e-324, 1e300, -1e300, 0.00123]
WEIGHTS = [
    {},
    {"range": dict.fromkeys(("model", "bull", "bear"), 0.0)},  # nothing weighs
    {"range": {"model": 0.0, "bull": 0.7}, "trend_up": {"bear": 2.5}},
]
VOTES = [
    (Vote("bull", Action.BUY, 0.65, "up"), Vote("bear", Action.HOLD, 0.4, "flat")),
    (Vote("bull", Action.HOLD, 0.3, "flat"), Vote("bear", Action.SELL, 0.7, "down")),
    (Vote("bull", Action.BUY, 0.55, "up"),),  # the bear did not vote
    (),  # nobody voted
]


def _cases() -> st.SearchStrategy[tuple[list[float], list[int], int, list[str]]]:
    n = st.integers(1, 30)
    return n.flatmap(
        lambda k: st.tuples(
            st.lists(st.sampled_from(ODD) | st.floats(allow_nan=True), min_size=k, max_size=k),
            st.lists(st.integers(0, len(VOTES) - 1), min_size=k, max_size=k),
            st.integers(0, len(WEIGHTS) - 1),
            st.lists(st.sampled_from(["range", "trend_up", "trend_down"]), min_size=k, max_size=k),
        )
    )


@settings(max_examples=200, deadline=None)
@given(_cases())
def test_shares_when_edges_and_weights_are_odd_then_each_float_is_the_scalar_functions(
    drawn: tuple[list[float], list[int], int, list[str]],
) -> None:
    edges, votes, w, regimes = drawn
    config = ConsensusConfig(regime_weights=WEIGHTS[w], policy=PolicyConfig(horizon=4))
    keys = sorted(set(zip(votes, regimes, strict=True)))
    weighings = tuple(weighing(VOTES[v], r, config) for v, r in keys)
    weighed = np.array([keys.index(k) for k in zip(votes, regimes, strict=True)])
    share, score = _shares(np.array(edges), weighings, weighed, config)
    scored = model_scores(np.array(edges), config).tolist()
    assert [repr(x) for x in scored] == [repr(model_score_of(e, config)) for e in edges]
    for e, i, got_share, got_score in zip(edges, weighed, share, score, strict=True):
        one = model_share(model_score_of(e, config), weighings[i])
        expected_score = net_score(shares_of(one, weighings[i]).values())
        assert repr(got_share) == repr(one)  # -0.0 and NaN compared too
        assert repr(got_score) == repr(expected_score)
