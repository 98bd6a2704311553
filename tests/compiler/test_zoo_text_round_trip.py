"""The IR text form round-trips every zoo model: structure always, weights on the small ones."""

import pytest

from spikeforge.compiler.frontends.zoo import ZOO, build
from spikeforge.isa.text import from_text, to_text


@pytest.mark.parametrize("name", sorted(ZOO))
def test_structure_round_trips(name):
    g = build(name, weights=False)
    text = to_text(g, weights=False)
    back = from_text(text, name)
    assert back == g and to_text(back, weights=False) == text


@pytest.mark.parametrize("name", ["mlp", "sdt"])
def test_weights_round_trip_exactly(name):
    g = build(name, seed=5)
    assert from_text(to_text(g)) == g
