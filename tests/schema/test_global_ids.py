"""Relay global IDs decode to what they encode; what is not one of ours decodes to None; the
IDs remembered for speed are only texts the size of ours."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from resolvers import global_id
from resolvers.global_id import from_global_id, to_global_id

TYPE_NAMES = st.sampled_from(["SubAccount", "Agency", "AutoRechargeRequest", "User"])


@given(TYPE_NAMES, st.uuids())
def test_an_id_decodes_to_what_it_encodes_the_first_time_and_the_next(type_name, key):
    encoded = to_global_id(type_name, key)
    assert from_global_id(encoded) == (type_name, key)
    assert from_global_id(encoded) == (type_name, key)


@given(st.text(max_size=120))
def test_any_text_decodes_as_the_plain_decoder_decodes_it(text):
    assert from_global_id(text) == global_id._decoded(text)


def test_a_text_longer_than_any_id_of_ours_is_not_remembered():
    global_id._remembered.cache_clear()
    before = global_id._remembered.cache_info().currsize
    long_id = to_global_id("SubAccount", uuid.uuid4()) + "A" * 10_000

    assert from_global_id(long_id) is None
    assert global_id._remembered.cache_info().currsize == before
    assert from_global_id(to_global_id("SubAccount", uuid.uuid4())) is not None
    assert global_id._remembered.cache_info().currsize == before + 1
