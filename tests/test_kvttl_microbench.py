"""The micro-benchmark entry point runs (its timings are printed, never asserted)."""

from kvttl import microbench


def test_microbench_runs(capsys):
    microbench.main(["--samples", "200", "--repeat", "3"])
    out = capsys.readouterr().out
    assert "one TTL decision over 200 samples" in out
