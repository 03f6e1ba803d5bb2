"""Finished results as files: SRT and WebVTT subtitles, plain text, TSV, JSON and RTTM."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FORMATS = ("json", "srt", "vtt", "txt", "tsv", "rttm")
"""Formats `render` writes. A diarization result (a list of speaker turns) renders as `json` or
`rttm` only: it has no text for the others."""

MEDIA_TYPES = {
    "json": "application/json",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
    "rttm": "text/plain; charset=utf-8",
}

MAX_LINE = 42
"""Characters per subtitle line by default (the common broadcast limit); an SRT speaker label
counts."""
MAX_LINES = 2
"""Lines per subtitle cue by default."""
MIN_CUE_MS = 1
"""Shortest cue: a cue never ends before it starts, even for a word timed as a point."""

LabelWidth = Callable[[str | None], int]
"""Characters a speaker's label takes on the first line of a cue."""


@dataclass
class _Piece:
    """A word (or part of an overlong word) with its time in seconds and its speaker."""

    text: str
    space: bool  # whether a space separates it from the piece before
    start: float | None
    end: float | None
    speaker: str | None


@dataclass
class Cue:
    start_ms: int
    end_ms: int
    lines: list[str]
    speaker: str | None


def render(
    result: Any, fmt: str, *, uri: str = "audio", width: int = MAX_LINE, lines: int = MAX_LINES
) -> tuple[str, str]:
    """(body, media type) of a finished task's `result` in `fmt` (one of FORMATS). `uri` names
    the recording in RTTM; subtitle cues have up to `lines` lines of `width` characters. Raises
    ValueError for an unknown format or one the result cannot have (subtitles of a
    diarization, RTTM of a transcript without speakers)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}'; use one of {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps(result, ensure_ascii=False), MEDIA_TYPES[fmt]
    if fmt == "rttm":
        return rttm(_turns(result), uri), MEDIA_TYPES[fmt]
    if not isinstance(result, Mapping) or not isinstance(result.get("segments"), list):
        other = "json or rttm (a diarization)" if isinstance(result, list) else "json"
        raise ValueError(
            f"a {fmt} file needs a transcript (with segments); this result renders as {other}"
        )
    segments = result["segments"]
    if fmt in ("srt", "vtt"):
        return (srt if fmt == "srt" else vtt)(segments, width, lines), MEDIA_TYPES[fmt]
    return (txt if fmt == "txt" else tsv)(segments), MEDIA_TYPES[fmt]


def _label(speaker: str | None) -> str:
    return f"[{speaker}] " if speaker else ""


def srt(
    segments: Sequence[Mapping[str, Any]], width: int = MAX_LINE, lines: int = MAX_LINES
) -> str:
    """SubRip: numbered cues, `00:01:02,345` times, `[SPEAKER_00] ` before a speaker's cue."""
    blocks = []
    for number, cue in enumerate(cues(segments, lambda s: len(_label(s)), width, lines), 1):
        text = "\n".join([_label(cue.speaker) + cue.lines[0], *cue.lines[1:]])
        span = f"{timestamp(cue.start_ms, ',')} --> {timestamp(cue.end_ms, ',')}"
        blocks.append(f"{number}\n{span}\n{text}\n")
    return "\n".join(blocks)


def _escape_vtt(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt(
    segments: Sequence[Mapping[str, Any]], width: int = MAX_LINE, lines: int = MAX_LINES
) -> str:
    """WebVTT: `00:01:02.345` times, the speaker as a voice tag (`<v SPEAKER_00>`)."""
    blocks = ["WEBVTT\n"]
    for cue in cues(segments, width=width, lines=lines):
        shown = [_escape_vtt(line) for line in cue.lines]
        if cue.speaker:
            shown[0] = f"<v {_escape_vtt(cue.speaker)}>{shown[0]}"
        span = f"{timestamp(cue.start_ms, '.')} --> {timestamp(cue.end_ms, '.')}"
        blocks.append(f"{span}\n" + "\n".join(shown) + "\n")
    return "\n".join(blocks)


def txt(segments: Sequence[Mapping[str, Any]], label: Callable[[str | None], str] = _label) -> str:
    """One segment per line, as Whisper writes it, with `[SPEAKER_00] ` (`label`) when known."""
    return "".join(
        f"{label(s.get('speaker'))}{_one_line(s['text'])}\n" for s in segments if s["text"].strip()
    )


def tsv(segments: Sequence[Mapping[str, Any]]) -> str:
    """`start<TAB>end<TAB>text` with times in integer milliseconds, as Whisper's CLI writes."""
    rows = ["start\tend\ttext"]
    rows += [
        f"{round(1000 * s['start'])}\t{round(1000 * s['end'])}\t{_one_line(s['text'])}"
        for s in segments
        if s["text"].strip()
    ]
    return "\n".join(rows) + "\n"


def rttm(turns: Iterable[Mapping[str, Any]], uri: str = "audio") -> str:
    """NIST RTTM speaker turns: `SPEAKER uri 1 start duration <NA> <NA> speaker <NA> <NA>`."""
    uri = "_".join(uri.split()) or "audio"
    return "".join(
        f"SPEAKER {uri} 1 {t['start']:.3f} {max(t['end'] - t['start'], 0.0):.3f} "
        f"<NA> <NA> {'_'.join(str(t['speaker']).split())} <NA> <NA>\n"
        for t in turns
    )


def _turns(result: Any) -> list[Mapping[str, Any]]:
    """Speaker turns of a diarization result, or the speaker-labelled segments of a transcript."""
    if isinstance(result, list):
        return result
    if isinstance(result, Mapping):
        segments = result.get("segments")
        turns = [s for s in segments or [] if s.get("speaker")]
        if turns or segments == []:  # no speech: nobody speaks
            return turns
    raise ValueError("an rttm file needs speakers: a diarization, or a transcript with speakers")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def timestamp(ms: int, separator: str, hours: bool = True) -> str:
    """`01:02:03,004`; without `hours`, the hours only from one on (`02:03.004`)."""
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return (f"{h:02d}:" if hours or h else "") + f"{m:02d}:{s:02d}{separator}{ms:03d}"


def cues(
    segments: Sequence[Mapping[str, Any]], label_width: LabelWidth = lambda _: 0,
    width: int = MAX_LINE, lines: int = MAX_LINES,
) -> list[Cue]:  # fmt: skip
    """Subtitle cues of at most `lines` lines of `width` characters, in time order and not
    overlapping. A long segment becomes several cues, cut between words at the words' own times
    (or, without word times, at times shared out by characters); a speaker change inside a
    segment starts a new cue. No word is left out; a word longer than a line is cut into parts.
    `label_width(speaker)` is how much of a cue's first line a speaker label takes."""
    made = [
        cue
        for segment in segments
        if segment["text"].strip()
        for cue in _balanced(_pieces(segment), label_width, width, lines)
    ]
    return _ordered(made)


def words_of(segment: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every word of a segment's text with a start and end in seconds (shared out between the
    timed neighbours, or over the segment, where the aligner gave none) and its speaker."""
    return [
        {"word": p.text, "start": p.start, "end": p.end}
        | ({"speaker": p.speaker} if p.speaker else {})
        for p in _pieces(segment)
    ]


def _pieces(segment: Mapping[str, Any]) -> list[_Piece]:
    """The segment's text cut into words, each with a time and speaker."""
    text, speaker = segment["text"], segment.get("speaker")
    pieces = _from_words(text, segment.get("words") or [], speaker)
    if pieces is None:  # no words, or words that do not spell the text: share out the text
        pieces = [_Piece(word, True, None, None, speaker) for word in text.split()]
    _fill_times(pieces, float(segment["start"]), float(segment["end"]))
    return pieces


def _from_words(
    text: str, words: Sequence[Mapping[str, Any]], speaker: str | None
) -> list[_Piece] | None:
    """Pieces from the aligned words when, read in order, they spell exactly the segment's text
    (spaces aside: languages written without spaces have one character per word)."""
    if not words:
        return None
    pieces: list[_Piece] = []
    cursor = 0
    for word in words:
        token = str(word.get("word", "")).strip()
        if not token:
            continue
        found = text.find(token, cursor)
        if found < 0 or text[cursor:found].strip():
            return None
        pieces.append(
            _Piece(
                token,
                found > cursor or not pieces,
                word.get("start"),
                word.get("end"),
                word.get("speaker", speaker),
            )
        )
        cursor = found + len(token)
    if text[cursor:].strip() or not pieces:
        return None
    return pieces


def _fill_times(pieces: list[_Piece], start: float, end: float) -> None:
    """Time untimed pieces by sharing the gap between their timed neighbours (or the segment's
    bounds) in proportion to their length; clamp timed ones into order."""
    index = 0
    previous_end: float | None = None  # end of the last timed piece; words never go back in time
    while index < len(pieces):
        piece = pieces[index]
        if piece.start is not None and piece.end is not None:
            piece.start = float(piece.start)
            if previous_end is not None:
                piece.start = max(piece.start, previous_end)
            piece.end = max(float(piece.end), piece.start)
            previous_end = piece.end
            index += 1
            continue
        gap_start = start if previous_end is None else previous_end
        run_end = index
        while run_end < len(pieces) and (
            pieces[run_end].start is None or pieces[run_end].end is None
        ):
            run_end += 1
        following = pieces[run_end].start if run_end < len(pieces) else None
        gap_end = max(float(end if following is None else following), gap_start)
        run = pieces[index:run_end]
        total = sum(len(p.text) for p in run)
        done = 0
        for p in run:
            p.start = gap_start + (gap_end - gap_start) * done / total
            done += len(p.text)
            p.end = gap_start + (gap_end - gap_start) * done / total
        previous_end = gap_end
        index = run_end


def _split_long(piece: _Piece, width: int) -> list[_Piece]:
    """A word wider than a line as line-sized parts, its time shared out by characters."""
    if len(piece.text) <= width:
        return [piece]
    assert piece.start is not None and piece.end is not None
    parts, length = [], len(piece.text)
    for offset in range(0, length, width):
        chunk = piece.text[offset : offset + width]
        parts.append(
            _Piece(
                chunk,
                piece.space if offset == 0 else False,
                piece.start + (piece.end - piece.start) * offset / length,
                piece.start + (piece.end - piece.start) * (offset + len(chunk)) / length,
                piece.speaker,
            )
        )
    return parts


def _balanced(pieces: list[_Piece], label_width: LabelWidth, width: int, lines: int) -> list[Cue]:
    """The layout with the narrowest lines that still needs no more cues and lines than
    full-width lines do: even lines and cues instead of a full one and a leftover word."""
    best = _layout(pieces, label_width, width, lines)
    needed = (len(best), sum(len(c.lines) for c in best))
    # down to the longest line a narrower width fills the same lines (so max_line_width=1000
    # costs no more than 42): start below it
    longest = max(len(t) + (label_width(c.speaker) if not i else 0) for c in best for i, t in enumerate(c.lines))  # fmt: skip
    for narrower in range(min(width, longest) - 1, width // 2, -1):
        trial = _layout(pieces, label_width, narrower, lines)
        if (len(trial), sum(len(c.lines) for c in trial)) != needed:
            break
        best = trial
    return best


def _layout(pieces: list[_Piece], label_width: LabelWidth, width: int, most: int) -> list[Cue]:
    """Fill lines of `width` greedily with whole words; a cue full at `most` lines or a new
    speaker starts the next cue."""
    made: list[Cue] = []
    lines: list[list[_Piece]] = []

    def close() -> None:
        if lines:
            first, last = lines[0][0], lines[-1][-1]
            assert first.start is not None and last.end is not None
            made.append(
                Cue(
                    round(first.start * 1000),
                    round(last.end * 1000),
                    [_join(line) for line in lines],
                    first.speaker,
                )
            )
            lines.clear()

    for whole in pieces:
        # a word never wider than the narrowest line: the first one, after the label
        narrowest = max(width - label_width(whole.speaker), width // 2)
        for piece in _split_long(whole, narrowest):
            if lines and piece.speaker != lines[0][0].speaker:
                close()
            if lines:
                line = lines[-1]
                limit = width - (label_width(piece.speaker) if len(lines) == 1 else 0)
                if len(_join(line)) + int(piece.space) + len(piece.text) <= limit:
                    line.append(piece)
                    continue
                if len(lines) == most:
                    close()
            lines.append([piece])
    close()
    return made


def _join(line: list[_Piece]) -> str:
    return "".join((" " if p.space and i else "") + p.text for i, p in enumerate(line))


def _ordered(made: list[Cue]) -> list[Cue]:
    """Cues in time order, none before 0, none overlapping the next, none ending before it starts.
    An overlap is taken off the earlier cue's end."""
    made.sort(key=lambda c: c.start_ms)
    for index, cue in enumerate(made):
        cue.start_ms = max(cue.start_ms, 0)
        if index:
            previous = made[index - 1]
            if previous.end_ms > cue.start_ms:
                previous.end_ms = max(cue.start_ms, previous.start_ms + MIN_CUE_MS)
            cue.start_ms = max(cue.start_ms, previous.end_ms)
        cue.end_ms = max(cue.end_ms, cue.start_ms + MIN_CUE_MS)
    return made
