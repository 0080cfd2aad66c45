import pytest

from localgw.engine.stops import StopMatcher


def run(stops, pieces):
    m = StopMatcher(stops)
    out = ""
    for piece in pieces:  # like the engine: nothing is fed once a stop completed
        out += m.feed(piece)
        if m.stopped:
            break
    if not m.stopped:
        out += m.flush()
    return out, m.stopped


def test_no_stops_passes_text_through():
    assert run([], ["a", "b"]) == ("ab", False)


def test_stop_inside_one_piece():
    assert run(["END"], ["hello END world"]) == ("hello ", True)


@pytest.mark.parametrize("text", ["abc<|stop|>def", "x<|stop|>", "<|stop|>", "no stop here <|st"])
def test_stop_split_at_every_boundary(text):
    """However the text is cut into pieces, the stop string never leaks and text before it does."""
    expected = text.split("<|stop|>")[0]
    for cut in range(len(text) + 1):
        out, stopped = run(["<|stop|>"], [text[:cut], text[cut:]])
        assert out == expected
        assert stopped == ("<|stop|>" in text)
    out, _ = run(["<|stop|>"], list(text))
    assert out == expected


def test_partial_prefix_released_when_it_turns_out_not_a_stop():
    m = StopMatcher(["STOP"])
    assert m.feed("ST") == ""
    assert m.feed("ay") == "STay"
    assert not m.stopped


def test_earliest_of_several_stops_wins():
    assert run(["b", "a"], ["xxab"]) == ("xx", True)


def test_empty_stop_strings_are_ignored():
    assert run(["", "z"], ["abc"]) == ("abc", False)
