"""The policy registry: presets resolve in one place, overrides win, bad names and knobs are clear errors."""

from __future__ import annotations

import pytest

from continuum.policy.config import ContinuumConfig
from continuum.policy.flags import override_flags
from continuum.policy.presets import PRESETS, describe, is_vllm, resolve
from continuum.policy.registry import ConfigError, names
from continuum.sched.scheduler import scheduler_for
from continuum.serve import cli
from continuum_eval.live.settings import BenchConfig, BenchError, policy_args


def test_every_preset_resolves_and_builds_its_scheduler():
    for name in PRESETS:
        cfg = resolve(name)
        assert (cfg is None) == is_vllm(name)
        cls, ctor = scheduler_for(name)
        assert ("continuum_config" in ctor) == (cfg is not None), name
        assert cls.__name__.startswith("Continuum") == (cfg is not None)


def test_overrides_win_over_the_preset_and_knobs_merge():
    cfg = resolve("mlfq", ordering="program-fcfs", knobs={"demotion.chunk": 512})
    assert cfg.ordering == "program-fcfs" and cfg.terms == ["demotion", "aging"]
    assert cfg.knob("demotion.chunk") == 512 and cfg.knob("aging.aging_s") == 5.0
    assert resolve("continuum/preserve").ttl_mode == "preserve"
    assert resolve("continuum", pin_cap=None).pin_cap == 0.5  # None means "not given"


@pytest.mark.parametrize("bad, needle", [
    (("nope",), "unknown policy 'nope'"),
    (("continuum/forever",), "retention 'forever'"),
    (("continuum",), None),
])
def test_bad_names_say_what_is_wrong(bad, needle):
    if needle is None:
        assert resolve(*bad) is not None
        return
    with pytest.raises(ConfigError, match=needle):
        resolve(*bad)


def test_bad_components_and_knobs_are_named():
    with pytest.raises(ConfigError, match="term 'fifo'"):
        resolve("continuum", terms=["fifo"])
    with pytest.raises(ConfigError, match="unknown knob 'demotion.size'"):
        resolve("continuum", knobs={"demotion.size": 3})
    with pytest.raises(ConfigError, match="knob aging.aging_s must be a finite number >= 0"):
        ContinuumConfig(knobs={"aging.aging_s": -1})
    with pytest.raises(ConfigError, match="pin_cap"):
        ContinuumConfig(pin_cap=2)
    with pytest.raises(ConfigError, match="vLLM's own scheduler"):
        resolve("vllm", ordering="fcfs")


def test_config_travels_through_the_environment(monkeypatch):
    cfg = resolve("adaptive", knobs={"adaptive.dwell_s": 9})
    monkeypatch.setenv("CONTINUUM_CONFIG", cfg.to_env())
    back = ContinuumConfig.from_env()
    assert back == cfg and back.knob("adaptive.dwell_s") == 9


def test_bench_turns_presets_and_overrides_into_serve_flags():
    cfg = BenchConfig(policies=["mlfq"], jps=[1], out_dir="x", overrides={"terms": ["sjf"],
                                                                            "knobs": {"sjf.scale": 64}})
    assert policy_args("mlfq", cfg) == ("mlfq", ["--terms", "sjf", "--knob", "sjf.scale=64"])
    assert policy_args("vllm", cfg) == ("vllm", [])
    assert policy_args("continuum/off", cfg)[1][:2] == ["--ttl-mode", "off"]
    with pytest.raises(BenchError, match="unknown policy"):
        policy_args("sglang", cfg)
    with pytest.raises(BenchError, match="no TTL mode"):
        policy_args("vllm/preserve", cfg)
    assert override_flags({"terms": []}) == ["--terms", "none"]


def test_cli_lists_every_preset_and_component(capsys):
    assert cli.main(["policies"]) == 0
    out = capsys.readouterr().out
    assert out == describe() + "\n"
    for name in list(PRESETS) + names("term") + names("ordering"):
        assert f"  {name} " in out
    assert "--knob demotion.chunk=256" in out


def test_serve_rejects_a_bad_knob_with_exit_2(capsys):
    assert cli.main(["serve", "tiny", "--knob", "demotion.size=3"]) == 2
    assert "unknown knob 'demotion.size'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["serve", "tiny", "--knob", "demotion.chunk"])
    assert exc.value.code == 2
