"""Subtitle and text renderers: output parsed back by real SRT/WebVTT parsers."""

from __future__ import annotations

import html
import json
from datetime import timedelta

import pytest
import srt
import webvtt

from app.pipeline.formats import FORMATS, MAX_LINE, MAX_LINES, render

LONG = (
    "So the thing about distributed systems is that every single message can be lost, "
    "duplicated or delayed, and you still have to give the user a consistent answer."
)


def timed(text: str, start: float, seconds_per_word: float = 0.4, speaker=None) -> dict:
    """A segment whose words are timed one after another (with small gaps)."""
    words, t = [], start
    for token in text.split():
        word = {"word": token, "start": round(t, 3), "end": round(t + seconds_per_word - 0.05, 3)}
        if speaker:
            word["speaker"] = speaker
        words.append(word)
        t += seconds_per_word
    segment = {"start": start, "end": words[-1]["end"], "text": text, "words": words}
    if speaker:
        segment["speaker"] = speaker
    return segment


def srt_cues(body: str) -> list[srt.Subtitle]:
    return list(srt.parse(body))


def vtt_cues(body: str) -> list[webvtt.Caption]:
    return list(webvtt.from_string(body))


def seconds(value: timedelta) -> float:
    return value.total_seconds()


def vtt_seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def strip_label(line: str) -> str:
    return line.split("] ", 1)[1] if line.startswith("[") else line


def check_layout(lines_per_cue: list[list[str]], width: int = MAX_LINE, most: int = MAX_LINES) -> None:  # fmt: skip
    for lines in lines_per_cue:
        assert 1 <= len(lines) <= most, lines
        assert all(0 < len(line) <= width for line in lines), lines


def check_order(spans: list[tuple[float, float]]) -> None:
    for index, (start, end) in enumerate(spans):
        assert 0 <= start < end
        if index:
            assert start >= spans[index - 1][1]


def test_srt_splits_long_segments_at_word_times_and_keeps_every_word():
    result = {
        "segments": [
            timed(LONG, 1.0, speaker="SPEAKER_00"),
            timed("Yes.", 13.0, speaker="SPEAKER_01"),
        ]
    }
    body, media_type = render(result, "srt")
    assert media_type.startswith("application/x-subrip")
    cues = srt_cues(body)
    assert len(cues) >= 3

    check_layout([c.content.splitlines() for c in cues])
    check_order([(seconds(c.start), seconds(c.end)) for c in cues])
    assert [c.index for c in cues] == list(range(1, len(cues) + 1))

    words = [w for s in result["segments"] for w in s["words"]]
    texts = [" ".join(strip_label(line) for line in c.content.splitlines()) for c in cues]
    assert " ".join(texts).split() == [w["word"] for w in words]

    # each cue starts at its first word's start and ends at its last word's end
    position = 0
    for cue, text in zip(cues, texts, strict=True):
        first, last = words[position], words[position + len(text.split()) - 1]
        assert seconds(cue.start) == pytest.approx(first["start"], abs=0.001)
        assert seconds(cue.end) == pytest.approx(last["end"], abs=0.001)
        position += len(text.split())

    # every cue carries its speaker's label on its first line, counted in the line length
    assert all(c.content.startswith("[SPEAKER_00] ") for c in cues[:-1])
    assert cues[-1].content == "[SPEAKER_01] Yes."


@pytest.mark.parametrize(("width", "most"), [(20, 1), (32, 1), (60, 3), (1000, 1)])
def test_line_width_and_count_can_be_chosen_and_every_word_is_kept(width, most):
    result = {"segments": [timed(LONG, 1.0, speaker="SPEAKER_00"), timed(LONG, 20.0)]}
    spoken = "".join(LONG.split()) * 2  # every character in order (a cut word has no space)
    cues = srt_cues(render(result, "srt", width=width, lines=most)[0])
    # the label counts, but leaves at least half a line for words (or long names cut them up)
    narrow = width - len("[SPEAKER_00] ") < width // 2
    shown = [[strip_label(x) if narrow else x for x in c.content.splitlines()] for c in cues]
    check_layout(shown, width, most)
    check_order([(seconds(c.start), seconds(c.end)) for c in cues])
    text = "".join(strip_label(line) for c in cues for line in c.content.splitlines())
    assert "".join(text.split()) == spoken
    captions = vtt_cues(render(result, "vtt", width=width, lines=most)[0])
    check_layout([c.text.splitlines() for c in captions], width, most)
    assert "".join("".join(c.text.split()) for c in captions) == spoken
    if width == 1000:  # one line a segment: no cue is cut where the text does not need it
        assert len(cues) == len(captions) == 2


def test_srt_timestamps_are_hours_minutes_seconds_commas_milliseconds():
    result = {"segments": [{"start": 3723.456, "end": 3724.5, "text": "Late."}]}
    body, _ = render(result, "srt")
    assert body == "1\n01:02:03,456 --> 01:02:04,500\nLate.\n"


def test_vtt_has_voice_tags_escapes_and_dot_timestamps():
    result = {
        "segments": [
            timed(LONG, 0.0, speaker="SPEAKER_00"),
            timed("Tom & Jerry <3 cheese", 14.0, speaker="SPEAKER_01"),
        ]
    }
    body, media_type = render(result, "vtt")
    assert media_type.startswith("text/vtt")
    assert body.startswith("WEBVTT\n\n")
    assert "\n00:00:14.000 --> " in body
    cues = vtt_cues(body)
    check_layout([[html.unescape(line) for line in c.text.splitlines()] for c in cues])
    check_order([(vtt_seconds(c.start), vtt_seconds(c.end)) for c in cues])
    assert {c.voice for c in cues[:-1]} == {"SPEAKER_00"} and cues[-1].voice == "SPEAKER_01"
    spoken = " ".join(html.unescape(c.text).replace("\n", " ") for c in cues)
    assert spoken == LONG + " Tom & Jerry <3 cheese"
    assert "&amp;" in body and "&lt;3" in body


def test_speaker_change_inside_a_segment_starts_a_new_cue():
    segment = timed("I think so. Really? Yes absolutely.", 2.0)
    for word in segment["words"]:
        word["speaker"] = "SPEAKER_01" if word["word"] == "Really?" else "SPEAKER_00"
    segment["speaker"] = "SPEAKER_00"
    cues = srt_cues(render({"segments": [segment]}, "srt")[0])
    assert [c.content for c in cues] == [
        "[SPEAKER_00] I think so.",
        "[SPEAKER_01] Really?",
        "[SPEAKER_00] Yes absolutely.",
    ]
    assert seconds(cues[1].start) == pytest.approx(segment["words"][3]["start"])


def test_without_word_times_long_segments_are_split_by_characters():
    result = {"segments": [{"start": 10.0, "end": 22.0, "text": LONG}]}
    for fmt in ("srt", "vtt"):
        body, _ = render(result, fmt)
        if fmt == "srt":
            cues = [
                (seconds(c.start), seconds(c.end), c.content.splitlines()) for c in srt_cues(body)
            ]
        else:
            cues = [
                (vtt_seconds(c.start), vtt_seconds(c.end), c.text.splitlines())
                for c in vtt_cues(body)
            ]
        assert len(cues) >= 2
        check_layout([c[2] for c in cues])
        check_order([(c[0], c[1]) for c in cues])
        assert cues[0][0] == 10.0 and cues[-1][1] == 22.0
        assert " ".join(" ".join(c[2]) for c in cues) == LONG
        # the share of time follows the share of characters
        for start, end, lines in cues:
            share = sum(len(line) for line in lines) / len(LONG)
            assert (end - start) / 12.0 == pytest.approx(share, abs=0.05)


def test_untimed_words_are_kept_and_timed_between_their_neighbours():
    segment = timed("one two three four", 5.0, seconds_per_word=1.0)
    for word in segment["words"][1:3]:
        del word["start"], word["end"]
    cues = srt_cues(render({"segments": [segment]}, "srt")[0])
    assert [c.content for c in cues] == ["one two three four"]
    assert seconds(cues[0].start) == 5.0 and seconds(cues[0].end) == 8.95


def test_cues_are_ordered_and_never_overlap_or_go_negative():
    result = {
        "segments": [
            {"start": 4.0, "end": 6.0, "text": "second"},
            {"start": -0.5, "end": 4.5, "text": "first overlaps the second"},
            {"start": 7.0, "end": 7.0, "text": "instant"},
            {"start": 6.5, "end": 6.2, "text": "backwards"},
        ]
    }
    cues = srt_cues(render(result, "srt")[0])
    assert [c.content for c in cues] == [
        "first overlaps the second",
        "second",
        "backwards",
        "instant",
    ]
    check_order([(seconds(c.start), seconds(c.end)) for c in cues])
    assert seconds(cues[0].start) == 0.0 and seconds(cues[0].end) == 4.0


def test_a_word_longer_than_a_line_is_cut_not_lost():
    word = "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft"
    result = {
        "segments": [
            {"start": 0.0, "end": 3.0, "text": f"Das {word} ist lang.", "speaker": "SPEAKER_00"}
        ]
    }
    cues = srt_cues(render(result, "srt")[0])
    lines = [line for c in cues for line in c.content.splitlines()]
    check_layout([c.content.splitlines() for c in cues])
    assert "".join(strip_label(line).replace(" ", "") for line in lines) == f"Das{word}istlang."


def test_languages_without_spaces_get_no_spaces_added():
    text = "我们今天讨论分布式系统的一致性问题以及网络分区时如何保证可用性和正确性这是一个非常重要的话题"
    words = [{"word": ch, "start": i * 0.2, "end": i * 0.2 + 0.15} for i, ch in enumerate(text)]
    result = {"segments": [{"start": 0.0, "end": words[-1]["end"], "text": text, "words": words}]}
    cues = srt_cues(render(result, "srt")[0])
    check_layout([c.content.splitlines() for c in cues])
    assert "".join(c.content.replace("\n", "") for c in cues) == text


def test_txt_and_tsv_write_one_segment_per_line():
    result = {
        "segments": [
            {"start": 0.0, "end": 1.2344, "text": " Hello\tthere. ", "speaker": "SPEAKER_00"},
            {"start": 1.5, "end": 2.0, "text": "   "},
            {"start": 61.0006, "end": 62.5, "text": "Bye.", "speaker": "SPEAKER_01"},
        ]
    }
    body, media_type = render(result, "txt")
    assert media_type.startswith("text/plain")
    assert body == "[SPEAKER_00] Hello there.\n[SPEAKER_01] Bye.\n"
    body, media_type = render(result, "tsv")
    assert media_type.startswith("text/tab-separated-values")
    rows = [line.split("\t") for line in body.splitlines()]
    assert rows == [
        ["start", "end", "text"],
        ["0", "1234", "Hello there."],
        ["61001", "62500", "Bye."],
    ]


def test_json_is_the_result_itself():
    result = {"segments": [{"start": 0.0, "end": 1.0, "text": "Grüße"}], "language": "de"}
    body, media_type = render(result, "json")
    assert media_type == "application/json" and json.loads(body) == result
    assert "Grüße" in body


def test_rttm_from_a_diarization_or_speaker_labelled_segments():
    turns = [
        {"label": "A", "speaker": "SPEAKER_00", "start": 0.5, "end": 2.25},
        {"label": "B", "speaker": "SPEAKER_01", "start": 2.0, "end": 4.0},
    ]
    body, _ = render(turns, "rttm", uri="my call")
    assert body.splitlines() == [
        "SPEAKER my_call 1 0.500 1.750 <NA> <NA> SPEAKER_00 <NA> <NA>",
        "SPEAKER my_call 1 2.000 2.000 <NA> <NA> SPEAKER_01 <NA> <NA>",
    ]
    transcript = {"segments": [{"start": 1.0, "end": 2.0, "text": "Hi", "speaker": "SPEAKER_00"}]}
    assert render(transcript, "rttm")[0] == (
        "SPEAKER audio 1 1.000 1.000 <NA> <NA> SPEAKER_00 <NA> <NA>\n"
    )
    assert json.loads(render(turns, "json")[0]) == turns


@pytest.mark.parametrize("fmt", ["srt", "vtt", "txt", "tsv"])
def test_a_diarization_has_no_subtitles(fmt):
    with pytest.raises(ValueError, match="rttm"):
        render([{"label": "A", "speaker": "SPEAKER_00", "start": 0.0, "end": 1.0}], fmt)


def test_unknown_formats_and_speakerless_rttm_are_refused():
    with pytest.raises(ValueError, match="unknown format"):
        render({"segments": []}, "docx")
    with pytest.raises(ValueError, match="speakers"):
        render({"segments": [{"start": 0.0, "end": 1.0, "text": "Hi"}]}, "rttm")
    assert set(FORMATS) == {"json", "srt", "vtt", "txt", "tsv", "rttm"}


def test_an_empty_transcript_gives_empty_but_valid_files():
    assert render({"segments": []}, "srt")[0] == ""
    assert render({"segments": []}, "vtt")[0] == "WEBVTT\n"
    assert vtt_cues(render({"segments": []}, "vtt")[0]) == []
    assert render({"segments": []}, "rttm")[0] == ""  # no speech: nobody speaks


def test_a_result_without_segments_names_what_it_renders_as():
    with pytest.raises(ValueError, match=r"renders as json$"):
        render({"language_code": "en", "confidence": 0.9}, "srt")
