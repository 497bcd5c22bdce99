"""The artist index's centres: the array sums give each artist the normalised mean of its tracks' vectors."""

import dataclasses

import numpy as np
import pytest

import navembed_pipeline.lib.recommend.artists as artists_module
from navembed_pipeline.lib.recommend.artists import ArtistIndex
from tests.lib.recommend.helpers import field, track


def looped_centres(index: ArtistIndex, model: str) -> np.ndarray:
    """The centres one artist and one track at a time (the definition)."""
    vectors = index.fields[model]
    out = np.zeros((len(index.artists), vectors.dimension))
    for i, artist in enumerate(index.artists.values()):
        rows = [v.mean(axis=0) for t in artist.track_ids if (v := vectors.vectors_of(t)) is not None]
        if rows:
            centre = np.mean(rows, axis=0)
            out[i] = centre / np.linalg.norm(centre)
    return out


@pytest.mark.parametrize("block", [1, 5, 64, 65_536])
def test_centres_are_each_artists_normalised_mean_track_vector(monkeypatch, block):
    monkeypatch.setattr(artists_module, "CENTRE_BLOCK", block)
    rng = np.random.default_rng(3)
    tracks, dsp, muq = [], {}, {}
    for i in range(60):
        artist = f"a{(i * 7) % 13}"
        tracks.append(dataclasses.replace(track(f"t{i:02d}", artist=artist), artist_id=artist))
        dsp[f"t{i:02d}"] = rng.standard_normal(8)
        if i % 4:  # some tracks lack muq vectors; some have several segments
            muq[f"t{i:02d}"] = rng.standard_normal((1 + i % 3, 5))
    for i in range(3):  # an artist whose tracks have dsp vectors only: a zero muq centre
        tracks.append(dataclasses.replace(track(f"z{i}", artist="only dsp"), artist_id="only-dsp"))
        dsp[f"z{i}"] = rng.standard_normal(8)
    fields = {"dsp": field("dsp", dsp), "muq": field("muq", muq)}
    index = ArtistIndex(tracks, fields, {"dsp": 1.0, "muq": 1.0})
    assert len(index) == 14
    for model in fields:
        got = index._centres[model]
        assert np.allclose(got, looped_centres(index, model), atol=1e-6)
    assert not index._centres["muq"][list(index.artists).index("only-dsp")].any()
