"""The recording format: read/write round trips, crash tolerance, precise errors."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest
from _sim_fixtures import spot_source
from hypothesis import given
from hypothesis import strategies as st
from marketcore_venue_binance.recording import (
    RecordingError,
    RecordingReader,
    RecordingWriter,
    frame_kind,
    read_recording,
)

FRAMES = [
    (1_723_161_253_937_085_768, b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate",'
                                b'"E":1,"s":"BTCUSDT","U":1,"u":2,"b":[["1.00","2.0"]],"a":[]}}'),
    (1_723_161_254_087_896_568, b'{"stream":"btcusdt@trade","data":{"e":"trade","E":2,'
                                b'"s":"BTCUSDT","t":7,"p":"1.00","q":"0.5","T":2,"m":true}}'),
    (1_723_161_254_206_652_067, b'{"lastUpdateId":2,"bids":[["1.00","2.0"]],"asks":[]}'),
]


def test_round_trip_gzip(tmp_path):
    path = tmp_path / "r.gz"
    with RecordingWriter(path) as writer:
        for recv_ns, raw in FRAMES:
            writer.write(recv_ns, raw)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert list(read_recording(path)) == FRAMES
    assert writer.frames == 3


def test_plain_text_and_blank_lines_and_crlf(tmp_path):
    path = tmp_path / "r.txt"
    text = b"\n".join(b"%d %s\r" % f for f in FRAMES[:2]) + b"\n\n  \n" + b"%d %s\n" % FRAMES[2]
    path.write_bytes(text)
    assert list(read_recording(path)) == FRAMES


def test_a_last_line_cut_mid_write_is_dropped_not_an_error(tmp_path):
    path = tmp_path / "r.txt"
    body = b"".join(b"%d %s\n" % f for f in FRAMES)
    path.write_bytes(body + b'1723161254306652067 {"stream":"btcusdt@trade","data":{"e":"tr')
    reader = RecordingReader(path)
    assert list(reader) == FRAMES
    assert reader.truncated


def test_a_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "r.txt"
    path.write_bytes(b"".join(b"%d %s\n" % f for f in FRAMES[:2]) + b"%d %s" % FRAMES[2])
    reader = RecordingReader(path)
    assert list(reader) == FRAMES
    assert not reader.truncated


def test_a_gzip_cut_anywhere_yields_a_prefix_of_the_frames(tmp_path):
    """A recorder killed between flushes leaves a gzip stream without its trailer."""
    frames = [(10**18 + i, b'{"stream":"x@trade","data":{"e":"trade","t":%d}}' % i)
              for i in range(300)]
    whole = tmp_path / "whole.gz"
    with RecordingWriter(whole, flush_interval_s=0.0) as writer:  # sync-flush every frame
        for recv_ns, raw in frames:
            writer.write(recv_ns, raw)
    data = whole.read_bytes()
    seen_truncated = 0
    for cut in range(20, len(data), max(1, len(data) // 40)):
        part = tmp_path / f"cut{cut}.gz"
        part.write_bytes(data[:cut])
        reader = RecordingReader(part)
        got = list(reader)
        assert got == frames[:len(got)], cut
        seen_truncated += reader.truncated
    assert seen_truncated > 30
    # flushed data is readable: a cut near the end loses at most the last frames
    part = tmp_path / "late.gz"
    part.write_bytes(data[:-12])
    assert len(list(read_recording(part))) >= 295


def test_writer_flush_makes_frames_readable_before_close(tmp_path):
    path = tmp_path / "live.gz"
    writer = RecordingWriter(path, flush_interval_s=3600)
    writer.write(*FRAMES[0])
    writer.flush()
    assert list(read_recording(path)) == FRAMES[:1]  # the file has no trailer yet
    writer.write(*FRAMES[1])
    writer.close()
    assert list(read_recording(path)) == FRAMES[:2]


def test_append_adds_a_gzip_member_read_as_one_recording(tmp_path):
    path = tmp_path / "r.gz"
    with RecordingWriter(path) as writer:
        writer.write(*FRAMES[0])
    with RecordingWriter(path, append=True) as writer:
        writer.write(*FRAMES[1])
        writer.write(*FRAMES[2])
    assert list(read_recording(path)) == FRAMES
    with gzip.open(path) as handle:  # and the standard library agrees
        assert handle.read().count(b"\n") == 3


def test_a_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"%d %s\n" % FRAMES[0] + b"not-a-number {}\n" + b"%d %s\n" % FRAMES[1])
    with pytest.raises(RecordingError, match=r"bad\.txt:2: expected '<receive_ns> <JSON>'"):
        list(read_recording(path))
    reader = RecordingReader(path, skip_bad=True)
    assert list(reader) == FRAMES[:2]
    assert reader.bad_lines == 1


def test_a_line_that_is_not_a_json_object_is_an_error(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"%d %s\n" % FRAMES[0] + b"123 [1,2,3]\n" + b"%d %s\n" % FRAMES[1])
    with pytest.raises(RecordingError, match=r":2: the frame is not a JSON object"):
        list(read_recording(path))


def test_corrupt_gzip_and_missing_file_are_clear_errors(tmp_path):
    path = tmp_path / "corrupt.gz"
    good = gzip.compress(b"%d %s\n" % FRAMES[0] * 50)
    path.write_bytes(good[:30] + bytes(b ^ 0xFF for b in good[30:60]) + good[60:])
    with pytest.raises(RecordingError, match="corrupt gzip"):
        list(read_recording(path))
    with pytest.raises(RecordingError, match="cannot open"):
        list(read_recording(tmp_path / "missing.gz"))


def test_writer_keeps_one_frame_per_line_and_refuses_non_objects(tmp_path):
    path = tmp_path / "r.gz"
    with RecordingWriter(path) as writer:
        writer.write(5, '{\n  "lastUpdateId": 1,\r\n  "bids": [], "asks": []\n}')
        with pytest.raises(RecordingError, match="not a JSON object"):
            writer.write(6, b"[1, 2]")
        with pytest.raises(RecordingError, match=">= 0"):
            writer.write(-1, b"{}")
    ((recv_ns, raw),) = list(read_recording(path))
    assert recv_ns == 5 and json.loads(raw) == {"lastUpdateId": 1, "bids": [], "asks": []}


@given(st.lists(st.tuples(st.integers(0, 2**63 - 1),
                          st.dictionaries(st.text(min_size=1, max_size=8),
                                          st.one_of(st.integers(), st.text(max_size=20),
                                                    st.booleans()), max_size=5)),
                max_size=30))
def test_any_json_object_round_trips(tmp_path_factory, items):
    path = tmp_path_factory.mktemp("h") / "r.gz"
    frames = [(recv, json.dumps(doc).encode()) for recv, doc in items]
    with RecordingWriter(path) as writer:
        for recv, raw in frames:
            writer.write(recv, raw)
    assert [(r, json.loads(raw)) for r, raw in read_recording(path)] == \
        [(r, dict(doc)) for r, doc in items]


def test_frame_kind_of_hand_written_frames():
    assert frame_kind(FRAMES[0][1]) == "depth"
    assert frame_kind(FRAMES[1][1]) == "trade"
    assert frame_kind(FRAMES[2][1]) == "snapshot"
    assert frame_kind(b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade"}}') == "aggTrade"
    assert frame_kind(b'{"stream":"btcusdt@ticker","data":{"e":"24hrTicker"}}') == "ticker"
    assert frame_kind(b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"B"}}') == "bookTicker"
    assert frame_kind(b'{"stream":"btcusdt@depth","data":{"e":"depthUpdate"}}') == "depth"
    assert frame_kind(b'{"stream":"btcusdt@depth5@100ms","data":{"lastUpdateId":1}}') == "other"
    assert frame_kind(b'{"stream":"btcusdt@kline_1m","data":{"e":"kline"}}') == "other"
    assert frame_kind(b'{"e":"trade","E":1,"s":"BTCUSDT"}') == "trade"  # a raw stream
    assert frame_kind(b'{"u":1,"s":"BTCUSDT","b":"1.0","B":"1","a":"1.1","A":"2"}') \
        == "bookTicker"
    assert frame_kind(b'{"result":null,"id":1}') == "other"


def test_frame_kind_counts_of_the_real_recording_match_its_sources():
    kinds = Counter(frame_kind(raw) for _, raw in read_recording(spot_source()))
    assert kinds == {"snapshot": 1, "depth": 3451, "trade": 9757, "bookTicker": 28040}
