"""Filling in words an aligner could not time, and the text normalisation of the English aligner."""

import numpy as np
import pytest

from app.pipeline.align import fill_words, word_spans
from app.pipeline.offline.align import (
    guess_phones,
    number_words,
    refine_boundaries,
    snap_to_pauses,
    spoken_words,
)
from app.pipeline.types import SAMPLE_RATE, Transcript, Word


def transcript(*segments: tuple[float, float, str], language: str = "en") -> Transcript:
    return {
        "language": language,
        "segments": [{"start": s, "end": e, "text": t} for s, e, t in segments],
    }


def w(word: str, start: float, end: float, score: float | None = None) -> Word:
    timed: Word = {"word": word, "start": start, "end": end}
    if score is not None:
        timed["score"] = score
    return timed


def times(words: list[Word]) -> list[tuple[float, float] | None]:
    return [(x["start"], x["end"]) if "start" in x else None for x in words]


def test_timed_words_pass_through_and_set_the_segment_bounds():
    source = transcript((0.0, 3.0, " Hello big world. "))
    source["segments"][0]["avg_logprob"] = -0.2
    timed = [[w(" Hello", 0.5, 0.9, 0.8), w(" big", 1.0, 1.2, 0.7), w(" world.", 1.3, 1.91234)]]
    out = fill_words(source, timed)
    seg = out["segments"][0]
    assert seg["words"] == [
        {"word": "Hello", "start": 0.5, "end": 0.9, "score": 0.8},
        {"word": "big", "start": 1.0, "end": 1.2, "score": 0.7},
        {"word": "world.", "start": 1.3, "end": 1.912},
    ]
    assert (seg["start"], seg["end"], seg["text"]) == (0.5, 1.912, " Hello big world. ")
    assert seg["avg_logprob"] == -0.2
    assert out["word_segments"] == seg["words"]
    assert out["language"] == "en"


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("nearest", [(1.0, 1.5), (1.0, 1.5), (3.0, 3.5), (3.0, 3.5), (3.0, 3.5)]),
        ("linear", [(1.0, 1.5), (2.0, 2.5), (3.0, 3.5), (3.0, 3.5), (3.0, 3.5)]),
        ("ignore", [(1.0, 1.5), None, (3.0, 3.5), None, None]),
    ],
)
def test_untimed_words_are_kept_and_interpolated(method, expected):
    source = transcript((0.0, 5.0, "one two three four five"))
    out = fill_words(source, [[w("one", 1.0, 1.5), w("three", 3.0, 3.5)]], method)
    assert [x["word"] for x in out["word_segments"]] == ["one", "two", "three", "four", "five"]
    assert times(out["word_segments"]) == expected
    assert all("score" not in x for x in out["word_segments"])


def test_nearest_picks_the_closer_neighbour_and_the_earlier_on_a_tie():
    source = transcript((0.0, 9.0, "a b c d e f"))
    out = fill_words(source, [[w("a", 0, 1), w("f", 5, 6)]], "nearest")
    assert times(out["word_segments"]) == [(0, 1), (0, 1), (0, 1), (5, 6), (5, 6), (5, 6)]


def test_a_segment_nothing_was_timed_in_keeps_its_text_and_bounds():
    source = transcript((2.0, 4.0, "nobody heard this"), (4.0, 5.0, "but this"))
    out = fill_words(source, [[], [w("but", 4.1, 4.4), w("this", 4.5, 4.9)]], "ignore")
    first, second = out["segments"]
    assert (first["start"], first["end"], first["text"]) == (2.0, 4.0, "nobody heard this")
    assert first["words"] == [{"word": "nobody"}, {"word": "heard"}, {"word": "this"}]
    assert [x["word"] for x in out["word_segments"]] == ["nobody", "heard", "this", "but", "this"]
    spread = fill_words(source, [[], []], "linear")["segments"][0]
    assert (spread["start"], spread["end"]) == (2.0, 4.0)
    assert times(spread["words"]) == [(2.0, 2.667), (2.667, 3.333), (3.333, 4.0)]


def test_times_are_clamped_into_the_segment_and_made_monotonic():
    source = transcript((1.0, 2.0, "a b c d"))
    timed = [[w("a", 0.2, 1.3), w("b", 1.5, 1.4), w("c", 1.2, 1.6), w("d", 1.9, 2.7)]]
    out = fill_words(source, timed)["word_segments"]
    assert times(out) == [(1.0, 1.3), (1.5, 1.5), (1.5, 1.6), (1.9, 2.0)]


def test_pieces_split_or_merged_differently_map_onto_the_words():
    source = transcript((0.0, 4.0, 'He said "42%" twice'))
    # Whisper-like pieces: the number and the sign apart, quotes merged into neighbours
    timed = [[w(" He", 0, 0.4), w(' said "', 0.5, 1.0), w("42", 1.0, 1.6), w('%"', 1.6, 2.0)]]
    out = fill_words(source, timed, "ignore")["word_segments"]
    assert [x["word"] for x in out] == ["He", "said", '"42%"', "twice"]
    assert times(out) == [(0, 0.4), (0.5, 1.0), (1.0, 2.0), None]
    # one piece over two words shares its time by their length
    out = fill_words(transcript((0, 2, "ab cdef")), [[w("ab cdef", 0.0, 1.2)]])["word_segments"]
    assert times(out) == [(0.0, 0.4), (0.4, 1.2)]


def test_pieces_not_in_the_text_add_nothing():
    source = transcript((0.0, 2.0, "real words"))
    out = fill_words(source, [[w("ghost", 0.1, 0.2), w("words", 1.0, 1.5), w("real", 0.0, 0.5)]])
    assert [x["word"] for x in out["word_segments"]] == ["real", "words"]
    # "real" came after "words" in the aligner's order, so it is not matched; it is interpolated
    assert times(out["word_segments"]) == [(1.0, 1.5), (1.0, 1.5)]


def test_languages_without_spaces_have_one_word_per_character():
    source = transcript((0.0, 1.0, "你好 世界"), language="zh")
    out = fill_words(source, [[w("你好", 0.0, 0.4), w("世界", 0.5, 0.9)]])
    assert [x["word"] for x in out["word_segments"]] == ["你", "好", "世", "界"]
    assert times(out["word_segments"]) == [(0.0, 0.2), (0.2, 0.4), (0.5, 0.7), (0.7, 0.9)]
    assert word_spans("a  bc", "en") == [(0, 1), (3, 5)]


def test_empty_segments_stay():
    source = transcript((0.0, 1.0, ""), (1.0, 2.0, "  "))
    out = fill_words(source, [[], []])
    assert [(s["start"], s["end"], s["text"], s["words"]) for s in out["segments"]] == [
        (0.0, 1.0, "", []),
        (1.0, 2.0, "  ", []),
    ]
    assert out["word_segments"] == []


def test_spoken_words_spell_out_numbers_and_symbols():
    assert spoken_words("42") == ["forty", "two"]
    assert spoken_words("1,250.5") == [
        "one",
        "thousand",
        "two",
        "hundred",
        "fifty",
        "point",
        "five",
    ]
    assert spoken_words("1999") == ["nineteen", "ninety", "nine"]
    assert spoken_words("1905") == ["nineteen", "oh", "five"]
    assert spoken_words("2000") == ["two", "thousand"]
    assert spoken_words("007") == ["zero", "zero", "seven"]
    assert spoken_words("50%") == ["fifty", "percent"]
    assert spoken_words("R&D") == ["r", "and", "d"]
    assert spoken_words("Don’t,") == ["don't"]
    assert spoken_words("café") == ["cafe"]
    assert spoken_words("—") == []
    assert number_words(3_000_017) == ["three", "million", "seventeen"]


def test_guessed_pronunciations_use_arpabet_phones():
    assert guess_phones("xqzzt") == "K S K Z Z T"
    assert guess_phones("shoo") == "SH UW"
    assert guess_phones("'") == "AH"


def test_word_edges_move_out_of_pauses():
    rng = np.random.default_rng(0)
    tone = 0.3 * np.sin(np.arange(SAMPLE_RATE // 2) * 0.2).astype(np.float32)
    pause = rng.normal(0, 1e-4, SAMPLE_RATE // 2).astype(np.float32)
    clip = np.concatenate([pause, tone, pause, tone, pause])  # words at 0.5-1.0 and 1.5-2.0
    # DTW-like times: each pause given to the next word, edges a little off
    words = [w("a", 0.0, 1.3), w("b", 1.3, 2.5)]
    snap_to_pauses(words, clip)
    assert times(words) == [(0.5, 1.0), (1.5, 2.0)]


def test_touching_word_boundaries_move_to_the_quietest_point_near_them():
    tone = 0.3 * np.sin(np.arange(SAMPLE_RATE) * 0.2).astype(np.float32)
    tone[7200:7520] *= 0.01  # a dip at 0.45-0.47 s between two words
    tone[12000:12160] *= 0.01  # a shorter dip at 0.75-0.76 s, too far from the boundary
    clip = np.concatenate([tone, np.zeros(SAMPLE_RATE // 2, np.float32)])
    words = [w("a", 0.0, 0.3), w("b", 0.3, 1.0), w("c", 1.2, 1.4)]
    refine_boundaries(words, clip)
    a, b, c = times(words)
    assert a is not None and b is not None
    assert a[1] == pytest.approx(0.45, abs=0.011) and b[0] == pytest.approx(0.47, abs=0.011)
    assert b[1] == 1.0 and c == (1.2, 1.4)  # a boundary in a pause stays


def test_timed_segments_are_split_into_sentences_with_their_words_and_chars():
    from app.pipeline.align import split_sentences

    text = "Hello there. Dr. Smith is here! Is it 3.5 now?"
    spans_words = text.split()
    words = [{"word": w, "start": float(i), "end": i + 0.5} for i, w in enumerate(spans_words)]
    chars = [{"char": c} for c in text]
    result = split_sentences(
        {
            "segments": [
                {
                    "start": 0,
                    "end": 10,
                    "text": text,
                    "words": words,
                    "chars": chars,
                    "avg_logprob": -0.2,
                }
            ],
            "word_segments": words,
            "language": "en",
        }
    )
    parts = result["segments"]
    assert [p["text"] for p in parts] == ["Hello there.", "Dr. Smith is here!", "Is it 3.5 now?"]
    assert [(p["start"], p["end"]) for p in parts] == [(0.0, 1.5), (2.0, 5.5), (6.0, 9.5)]
    assert ["".join(c["char"] for c in p["chars"]) for p in parts] == [p["text"] for p in parts]
    assert all(p["avg_logprob"] == -0.2 for p in parts)
    assert [w for p in parts for w in p["words"]] == words  # no word lost or reordered


def test_segments_with_untimed_words_are_not_split():
    from app.pipeline.align import split_sentences

    words = [{"word": "One."}, {"word": "Two.", "start": 1.0, "end": 1.2}]
    segment = {"start": 0, "end": 2, "text": "One. Two.", "words": words}
    result = split_sentences({"segments": [segment], "word_segments": words, "language": "en"})
    assert result["segments"] == [segment]
