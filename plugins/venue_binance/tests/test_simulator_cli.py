"""``marketcore binance-sim``: its arguments and a short run."""

from __future__ import annotations

import argparse
import re
import threading
import urllib.request

import pytest
from _sim_fixtures import head, spot_source
from marketcore_venue_binance.simulator import cli


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="marketcore binance-sim")
    cli.configure(parser)
    return parser.parse_args(argv)


def test_defaults():
    args = parse()
    assert (args.recordings, args.speed, args.clone, args.port, args.market, args.loop) == \
        ([], 1.0, 0, 0, "auto", False)
    assert args.weight_per_minute == 6000 and args.max_streams == 1024


def test_runs_prints_its_urls_and_serves_until_the_duration_ends(tmp_path, capsys):
    path = head(spot_source(), tmp_path / "spot.gz", 500)
    args = parse(str(path), "--speed", "2", "--clone", "2", "--duration", "1.5")
    answers: list[bytes] = []

    def probe() -> None:  # while it runs, its REST side answers
        for _ in range(100):
            out = capsys.readouterr().out
            found = re.search(r"REST\s+(http://\S+)", out)
            if found:
                with urllib.request.urlopen(found.group(1), timeout=5) as response:
                    answers.append(response.read())
                return
            threading.Event().wait(0.02)

    # capsys is read from the probe thread; the first print is flushed before serving
    thread = threading.Thread(target=probe)
    thread.start()
    assert cli.run(args) == 0
    thread.join()
    assert answers and b'"lastUpdateId":50093239218' in answers[0]


def test_output_names_the_streams_and_the_rest_endpoint(tmp_path, capsys):
    path = head(spot_source(), tmp_path / "spot.gz", 500)
    assert cli.run(parse(str(path), "--clone", "3", "--duration", "0.2")) == 0
    captured = capsys.readouterr()
    assert "spot BTC0001USDT, BTC0002USDT, BTC0003USDT, 1x" in captured.out
    assert re.search(r"ws://127\.0\.0\.1:\d+/stream\?streams=btc0001usdt@depth@100ms",
                     captured.out)
    assert "/api/v3/depth?symbol=BTC0001USDT&limit=1000" in captured.out
    assert "connections" in captured.err


def test_without_a_recording_it_looks_for_the_bundled_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no recording given"):
        cli.run(parse("--duration", "0.1"))
    bundled = tmp_path / cli.DEFAULT_RECORDING
    bundled.parent.mkdir(parents=True)
    head(spot_source(), bundled, 300)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert cli._default_recordings() == [str(bundled)]


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="recording not found"):
        cli.run(parse(str(tmp_path / "nope.gz"), "--duration", "0.1"))
