"""Give every word and segment of an aligned transcript the speaker who was talking."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from app.pipeline.types import AlignedTranscript, Segment, SpeakerTurn, Word


def _overlaps(start: float, end: float, turns: Sequence[SpeakerTurn]) -> dict[str, float]:
    seconds: dict[str, float] = defaultdict(float)
    for turn in turns:
        overlap = min(end, turn["end"]) - max(start, turn["start"])
        if overlap > 0:
            seconds[turn["speaker"]] += overlap
    return seconds


def _nearest(start: float, end: float, turns: Sequence[SpeakerTurn]) -> str | None:
    """The speaker of the turn closest in time (for words that fall in a gap between turns)."""
    best, best_gap = None, float("inf")
    for turn in turns:
        gap = max(turn["start"] - end, start - turn["end"], 0.0)
        if gap < best_gap:
            best, best_gap = turn["speaker"], gap
    return best


def speaker_for(start: float, end: float, turns: Sequence[SpeakerTurn]) -> str | None:
    """Who spoke most during [start, end]; the nearest speaker when nobody did."""
    seconds = _overlaps(start, end, turns)
    if seconds:
        return max(seconds, key=lambda s: seconds[s])
    return _nearest(start, end, turns)


def _fill_untimed(words: list[Word], fallback: str) -> None:
    previous: str | None = None
    pending: list[Word] = []
    for word in words:
        if "speaker" in word:
            previous = word["speaker"]
            for waiting in pending:
                waiting["speaker"] = previous
            pending = []
        elif previous is not None:
            word["speaker"] = previous
        else:
            pending.append(word)
    for waiting in pending:
        waiting["speaker"] = fallback


def assign_speakers(
    transcript: AlignedTranscript, turns: Sequence[SpeakerTurn]
) -> AlignedTranscript:
    """A copy of `transcript` with `speaker` on each timed word and each segment. A segment's
    speaker is whoever said most of its timed words (by duration), else whoever spoke most over
    its span; an untimed word takes the speaker of the timed word before it (else after it,
    else the segment's). No speech turns: returned unchanged."""
    segments: list[Segment] = []
    word_segments: list[Word] = []
    for seg in transcript["segments"]:
        new_seg: Segment = {**seg}
        words: list[Word] = []
        said: dict[str, float] = defaultdict(float)
        for word in seg.get("words", []):
            new_word: Word = {**word}
            if turns and "start" in word and "end" in word:
                speaker = speaker_for(word["start"], word["end"], turns)
                if speaker is not None:
                    new_word["speaker"] = speaker
                    said[speaker] += max(word["end"] - word["start"], 0.01)
            words.append(new_word)
        if turns:
            seg_speaker = (
                max(said, key=lambda s: said[s])
                if said
                else speaker_for(seg["start"], seg["end"], turns)
            )
            if seg_speaker is not None:
                new_seg["speaker"] = seg_speaker
                _fill_untimed(words, seg_speaker)
        if "words" in seg:
            new_seg["words"] = words
        segments.append(new_seg)
        word_segments.extend(words)
    result: AlignedTranscript = {"segments": segments, "word_segments": word_segments}
    if "language" in transcript:
        result["language"] = transcript["language"]
    return result
