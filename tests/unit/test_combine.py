from app.pipeline.combine import assign_speakers, speaker_for

TURNS = [
    {"label": "A", "speaker": "SPEAKER_00", "start": 0.0, "end": 5.0},
    {"label": "B", "speaker": "SPEAKER_01", "start": 5.0, "end": 9.0},
    {"label": "A", "speaker": "SPEAKER_00", "start": 12.0, "end": 15.0},
]


def test_speaker_is_whoever_spoke_most_of_the_span():
    assert speaker_for(4.0, 6.5, TURNS) == "SPEAKER_01"
    assert speaker_for(4.0, 5.5, TURNS) == "SPEAKER_00"


def test_word_in_a_gap_takes_the_nearest_speaker():
    assert speaker_for(11.0, 11.5, TURNS) == "SPEAKER_00"
    assert speaker_for(9.2, 9.4, TURNS) == "SPEAKER_01"


def test_every_word_and_segment_gets_a_speaker_and_nothing_is_lost():
    transcript = {
        "segments": [
            {
                "start": 0.5,
                "end": 8.0,
                "text": "hi there how are you",
                "words": [
                    {"word": "hi", "start": 0.5, "end": 0.9},
                    {"word": "there", "start": 1.0, "end": 1.4},
                    {"word": "how", "start": 6.0, "end": 6.3},
                    {"word": "are"},  # untimed: keeps its text, takes the segment's speaker
                    {"word": "you", "start": 7.0, "end": 7.5},
                ],
            }
        ],
        "word_segments": [],
        "language": "en",
    }
    result = assign_speakers(transcript, TURNS)
    words = result["segments"][0]["words"]
    assert [w["word"] for w in words] == ["hi", "there", "how", "are", "you"]
    assert [w["speaker"] for w in words] == [
        "SPEAKER_00",
        "SPEAKER_00",
        "SPEAKER_01",
        "SPEAKER_01",
        "SPEAKER_01",
    ]
    # SPEAKER_01 said 0.8 s of the words, SPEAKER_00 0.8 s: the tie goes to the first found
    assert result["segments"][0]["speaker"] in {"SPEAKER_00", "SPEAKER_01"}
    assert [w["word"] for w in result["word_segments"]] == ["hi", "there", "how", "are", "you"]
    assert result["language"] == "en"
    assert "speaker" not in transcript["segments"][0]  # the input is not modified


def test_segment_speaker_follows_the_majority_of_its_words():
    transcript = {
        "segments": [
            {
                "start": 4.0,
                "end": 9.0,
                "text": "a b c",
                "words": [
                    {"word": "a", "start": 4.0, "end": 4.5},
                    {"word": "b", "start": 5.5, "end": 7.0},
                    {"word": "c", "start": 7.5, "end": 8.8},
                ],
            }
        ],
        "word_segments": [],
    }
    assert assign_speakers(transcript, TURNS)["segments"][0]["speaker"] == "SPEAKER_01"


def test_segments_without_words_get_a_speaker_from_their_span():
    transcript = {"segments": [{"start": 12.5, "end": 14.0, "text": "later"}], "word_segments": []}
    result = assign_speakers(transcript, TURNS)
    assert result["segments"][0]["speaker"] == "SPEAKER_00"
    assert "words" not in result["segments"][0]


def test_no_turns_leaves_the_transcript_without_speakers():
    transcript = {
        "segments": [
            {"start": 0, "end": 1, "text": "x", "words": [{"word": "x", "start": 0, "end": 1}]}
        ],
        "word_segments": [],
    }
    result = assign_speakers(transcript, [])
    assert "speaker" not in result["segments"][0]
    assert result["word_segments"] == [{"word": "x", "start": 0, "end": 1}]
