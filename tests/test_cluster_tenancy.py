"""Tenancy defined once for a cluster: one file of keys, admin keys and the tenant pin share that `continuum serve`
reads and `continuum cluster` hands every local replica; and the share as a quota of the *cluster's* pinnable
blocks, each replica enforcing it on its own budget (`continuum.tenancy.quota_blocks`). No engine: the serve
command records what it would start, the replicas' pin tables stand alone, the merged view reads fake stats."""

from __future__ import annotations

import json

import pytest

from continuum.cluster.affinity import home_of
from continuum.cluster.cluster import Cluster
from continuum.cluster.fanout import Answer
from continuum.cluster.quota import cluster_quota
from continuum.cluster.replicas import replica_args
from continuum.cluster.stats_merge import merge
from continuum.sched.pins import KVPins
from continuum.serve import cli, server
from continuum.serve.tenancy_file import TenancyError, load
from continuum.tenancy import qualify, quota_blocks, tenant_of_key

FILE = 'api_keys = ["key-a", "key-b"]\nadmin_api_keys = ["root"]\ntenant_pin_cap = 0.25\n'


def write(tmp_path, text: str = FILE):
    path = tmp_path / "tenancy.toml"
    path.write_text(text)
    return path


@pytest.fixture
def served(monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    calls: list[dict] = []
    monkeypatch.setattr(server, "serve", lambda model, config, port, extra, **kw: calls.append(
        {"config": config, "extra": extra, **kw}))
    return calls


def test_the_file_is_read_and_a_bad_one_names_the_file_and_setting(tmp_path):
    t = load(write(tmp_path))
    assert (t.api_keys, t.admin_keys, t.tenant_pin_cap) == (("key-a", "key-b"), ("root",), 0.25)
    assert t.path.is_absolute()  # what replicas started from another folder are given
    for text, says in [("tenant_pin_cap = 1.5", "tenant_pin_cap"), ("tenant_pin_cap = true", "tenant_pin_cap"),
                       ('api_keys = ["a", ""]', "api_keys"), ('admin_api_keys = "root"', "admin_api_keys"),
                       ('api_key = ["a"]', "unknown setting 'api_key'"), ("api_keys = [", "not TOML")]:
        with pytest.raises(TenancyError, match=says):
            load(write(tmp_path, text))
    with pytest.raises(TenancyError, match="cannot read"):
        load(tmp_path / "absent.toml")


def test_serve_takes_keys_and_the_share_from_the_file_and_flags_add_keys(served, tmp_path, capsys):
    path = write(tmp_path)
    assert cli.main(["serve", "tiny", "--tenancy", str(path), "--api-key", "key-c"]) == 0
    (call,) = served
    assert call["api_keys"] == ["key-c", "key-a", "key-b"] and call["admin_keys"] == ["root"]
    assert call["config"].tenant_pin_cap == 0.25 and "--tenancy" not in call["extra"]
    # The share is set in one place; a bad file is refused before anything starts, naming the flag.
    assert cli.main(["serve", "tiny", "--tenancy", str(path), "--tenant-pin-cap", "0.5"]) == 2
    assert "--tenancy" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["serve", "tiny", "--tenancy", str(write(tmp_path, "tenant_pin_cap = 2"))])
    assert exc.value.code == 2 and "--tenancy" in capsys.readouterr().err
    assert len(served) == 1
    # A share in the file with no key anywhere: tenants are keys, as for the flag.
    assert cli.main(["serve", "tiny", "--tenancy", str(write(tmp_path, "tenant_pin_cap = 0.5"))]) == 2


def test_the_cluster_hands_every_local_replica_the_same_file(tmp_path, capsys):
    path = write(tmp_path)
    args, extra = cli.build_parser().parse_known_args(["cluster", "--replicas", "2", "tiny", "--tenancy", str(path),
                                                       "--block-size", "32"])
    cluster = Cluster("tiny", 2, replica_args(args, extra), port=9000)
    for replica in cluster.replicas:
        cmd = replica.cmd
        assert cmd[cmd.index("--tenancy") + 1] == str(path.resolve()) and "--block-size" in cmd
    # What each replica gets is a valid `continuum serve` command line.
    serve_args, _ = cli.build_parser().parse_known_args(cluster.replicas[0].cmd[3:])
    assert serve_args.tenancy.api_keys == ("key-a", "key-b")
    with pytest.raises(SystemExit) as exc:  # checked before anything starts
        cli.main(["cluster", "tiny", "--tenancy", str(tmp_path / "absent.toml")])
    assert exc.value.code == 2 and "--tenancy" in capsys.readouterr().err


class NullPool:
    """vLLM's block pool where no engine runs: the pin table alone counts what a pin holds."""

    class _Ids(dict):
        def __missing__(self, key: int) -> int:
            return key

    blocks = _Ids()

    def touch(self, blocks: list) -> None:
        pass

    def free_blocks(self, blocks: list) -> None:
        pass


def replicas_pinning(budgets: list[int], share: float, tenants: dict[str, int]) -> list[KVPins]:
    """One pin table per replica, built as the scheduler builds it; each tenant's programs (4 blocks each) go
    to their replica by the session hash the router uses, and every finished turn asks to be pinned."""
    pins = [KVPins(NullPool(), budget, tenant_share=share) for budget in budgets]
    block = 0
    for key, programs in tenants.items():
        for i in range(programs):
            program = qualify(tenant_of_key(key), f"agent-{i}")
            pins[home_of(program, len(budgets))].pin(program, list(range(block, block + 4)), 0.0, 60.0, 1.0, i)
            block += 4
    return pins


def test_each_replica_holds_a_tenant_to_the_share_of_its_own_budget_which_adds_up_to_the_cluster_share():
    budgets, share = [40, 40, 80], 0.25
    pins = replicas_pinning(budgets, share, {"key-a": 60, "key-b": 3})
    a, b = tenant_of_key("key-a"), tenant_of_key("key-b")
    for p, budget in zip(pins, budgets):
        assert p.table.group_cap_blocks == quota_blocks(share, budget)
        assert p.table.group_blocks(a) == quota_blocks(share, budget)  # enough demand: the quota binds everywhere
    assert sum(p.table.group_blocks(a) for p in pins) == share * sum(budgets)  # 40 of the cluster's 160
    assert sum(p.table.group_blocks(b) for p in pins) == 12  # the other tenant still pins all three turns
    # The rule's limit: a tenant whose programs all sit on one replica gets that replica's quota, not more.
    only = home_of(qualify(a, "agent-0"), 3)
    alone = replicas_pinning(budgets, share, {"key-a": 1})
    assert sum(p.table.group_blocks(a) for p in alone) == alone[only].table.group_blocks(a) <= quota_blocks(
        share, budgets[only])
    assert quota_blocks(1.0, 40) is None  # a share of 1: no quota at all


def stats(share: float, budget: int) -> Answer:
    body = {"config": {"tenant_pin_cap": share, "pin_cap_blocks": budget}, "programs": [], "kv": {}}
    return Answer(f"http://r{budget}-{share}", 200, json.dumps(body))


def test_the_merged_view_shows_the_clusters_quota_and_a_replica_with_another_share():
    _, view = merge([stats(0.25, 40), stats(0.25, 80)])
    assert view["quota"] == {"tenant_pin_cap": 0.25, "agree": True, "pin_budget_blocks": 120,
                             "tenant_quota_blocks": 30}
    _, view = merge([stats(0.25, 40), stats(0.5, 40)])  # one replica started from another copy of the file
    assert view["quota"]["agree"] is False and view["quota"]["tenant_pin_cap"] is None
    assert view["quota"]["tenant_quota_blocks"] == 10 + 20
    assert cluster_quota([{"config": {"policy": "vllm"}}]) is None
    assert "quota" not in merge([Answer("http://x", 200, '{"programs": []}')])[1]
