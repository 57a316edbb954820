"""`continuum serve`'s command line: vLLM flags before or after the model, help that says where vLLM's flags
are, bad values that exit 2 naming the flag, every API key reaching vLLM.

Starting a server is replaced by a recorder of what `server.serve` was given (the live modules start real
ones, e.g. tests/test_tenancy.py with vLLM flags before the model); what it would hand vLLM is parsed by
vLLM's own parser."""

from __future__ import annotations

import pytest

from continuum.http.keys import ADMIN_ENV
from continuum.serve import cli, models, server
from continuum.tenancy import key_digest


@pytest.fixture
def served(monkeypatch):
    calls: list[dict] = []
    monkeypatch.setattr(server, "serve", lambda model, config, port, extra, **kw: calls.append(
        {"model": model, "config": config, "port": port, "extra": extra, **kw}))
    return calls


@pytest.mark.parametrize("argv, model, extra", [
    (["--policy", "vllm", "--block-size", "32", "--num-gpu-blocks-override", "320"], models.DEFAULT_MODEL,
     ["--block-size", "32", "--num-gpu-blocks-override", "320"]),
    (["--block-size", "32", "tiny", "--enforce-eager"], "tiny", ["--block-size", "32", "--enforce-eager"]),
    (["--enforce-eager", "tiny", "--pin-cap", "0.3"], "tiny", ["--enforce-eager"]),
    (["tiny", "--max-model-len", "2048", "--seed", "-1"], "tiny", ["--max-model-len", "2048", "--seed", "-1"]),
    (["--block_size=64", "--port", "9000", "tiny"], "tiny", ["--block_size=64"]),
])
def test_vllm_flags_may_come_before_or_after_the_model(served, argv, model, extra):
    assert cli.main(["serve", *argv]) == 0
    (call,) = served
    assert call["model"] == model and call["extra"] == extra
    if "--pin-cap" in argv:
        assert call["config"].pin_cap == 0.3
    vllm_args = server.vllm_parser().parse_args(
        server.build_vllm_args(model, call["config"] is not None, call["port"], call["extra"]))
    assert vllm_args.model == models.resolve(model)
    assert vllm_args.model_tag is None  # nothing was left over for vLLM to take for a model


def test_help_lists_continuums_flags_and_says_where_vllms_are(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["serve", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--policy", "--port", "--engine-nice", "--api-key", "--admin-api-key", "--tenant-pin-cap",
                 "--pin-cap", "--ttl-mode", "--help-vllm"):
        assert flag in out
    assert "vLLM's own flags" in out and "before or after MODEL" in out


def test_help_vllm_lists_vllms_flags(capsys):
    assert cli.main(["serve", "--help-vllm"]) == 0
    out = capsys.readouterr().out
    assert "--block-size" in out and "--max-model-len" in out


@pytest.mark.parametrize("argv, flag", [
    (["--pin-cap", "2"], "--pin-cap"),
    (["--port", "x"], "--port"),
    (["--port", "70000"], "--port"),
    (["--engine-nice", "40"], "--engine-nice"),
    (["--tenant-pin-cap", "1.5", "--api-key", "k"], "--tenant-pin-cap"),
    (["--tenant-pin-cap", "0.5"], "--tenant-pin-cap"),  # tenants need keys
    (["--api-key", ""], "--api-key"),
    (["--ttl-mode", "sometimes"], "--ttl-mode"),
    (["--terms", "nope"], "--terms"),
    (["--knob", "nope.x=1"], "--knob"),
    (["--knob", "oops"], "--knob"),
    (["--kv-offloading-size", "8"], "--kv-offloading-size"),  # vLLM's CPU build has no offloading worker
])
def test_a_bad_continuum_flag_value_exits_2_naming_the_flag(served, capsys, monkeypatch, argv, flag):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    try:
        code = cli.main(["serve", "tiny", *argv])
    except SystemExit as exc:
        code = exc.code
    assert code == 2 and not served
    assert flag in capsys.readouterr().err


def test_every_key_reaches_vllm_and_admin_keys_travel_as_digests(served, monkeypatch):
    monkeypatch.setenv(ADMIN_ENV, "")  # restored after: key_flags writes the real environment
    monkeypatch.setenv("VLLM_API_KEY", "from-env")
    assert cli.main(["serve", "tiny", "--api-key", "a", "--api-key", "b", "c", "--admin-api-key", "root"]) == 0
    (call,) = served
    assert call["api_keys"] == ["a", "b", "c"] and call["admin_keys"] == ["root"]
    flags = server.key_flags(call["api_keys"], call["admin_keys"])
    assert server.vllm_parser().parse_args(["--model", "x", *flags]).api_key == ["a", "b", "c", "root"]
    import os

    assert os.environ[ADMIN_ENV] == key_digest("root") and "root" not in os.environ[ADMIN_ENV]
    # Without --api-key, vLLM's VLLM_API_KEY stays valid next to an admin key.
    assert server.key_flags([], ["root"]) == ["--api-key", "from-env", "root"]
    assert server.key_flags([], []) == []


@pytest.mark.parametrize("extra, size", [([], 1), (["--data-parallel-size", "2"], 2), (["-dp=3"], 3),
                                         (["--enforce-eager", "-dp", "4"], 4), (["--data-parallel-size"], 1),
                                         (["--data-parallel-size-local", "2"], 1)])
def test_the_data_parallel_size_is_read_from_vllms_flags(extra, size):
    assert server.data_parallel_size(extra) == size
    assert (server.DP_MIDDLEWARE in server.build_vllm_args("tiny", True, 8000, extra)) == (size > 1)


def test_a_stopped_servers_control_files_are_removed_and_no_others(tmp_path):
    base = tmp_path / "continuum-1-abc.ipc"
    mine = [base, tmp_path / "continuum-1-abc.ipc-dp0", tmp_path / "continuum-1-abc.ipc-counts"]
    other = tmp_path / "continuum-1-abd.ipc"
    for path in (*mine, other):
        path.write_bytes(b"")
    server.remove_control_files(f"ipc://{base}")
    assert [p.exists() for p in mine] == [False, False, False] and other.exists()
