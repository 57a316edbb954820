"""The shipped repository tasks: SWE-bench instances, reproducible repositories, graded by swebench.harness."""

from __future__ import annotations

import json
import shutil

import pytest

from continuum_eval.agents_bench.swe_grade import grade
from continuum_workloads.repo_tasks import DATA_DIR, RepoTaskError, build_repos, checkout, load_tasks

SWE_BENCH_KEYS = {"instance_id", "repo", "base_commit", "problem_statement", "patch", "test_patch", "FAIL_TO_PASS",
                  "PASS_TO_PASS", "version", "environment_setup_commit", "image", "eval_script", "log_parser",
                  "eval_type"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tasks = load_tasks()
    return tasks, build_repos(tasks, tmp_path_factory.mktemp("repos"))


def test_tasks_are_swebench_instances():
    tasks = load_tasks()
    assert len(tasks) >= 5
    for t in tasks:
        assert SWE_BENCH_KEYS <= t.keys(), t["instance_id"]
        assert t["FAIL_TO_PASS"] and t["PASS_TO_PASS"] and len(t["base_commit"]) == 40
        assert t["problem_statement"].strip() and "diff --git" in t["test_patch"]
    assert [t["instance_id"] for t in load_tasks(limit=2)] == [t["instance_id"] for t in tasks[:2]]
    with pytest.raises(RepoTaskError, match="nope"):
        load_tasks(instance_ids=["nope"])


def test_repositories_are_built_at_their_base_commit(built, tmp_path):
    tasks, repos = built
    again = build_repos(tasks, repos[tasks[0]["instance_id"]].parent)  # reused, same commits
    assert again == repos
    wc = checkout(repos[tasks[0]["instance_id"]], tasks[0]["base_commit"], tmp_path / "wc")
    assert (wc / "tests").is_dir() and (wc / ".git").is_dir()
    # Changed source no longer matches the task's base_commit: an error, not a silent regrade.
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    name = tasks[0]["repo"].split("/")[-1]
    (data / "repos" / name / "README.md").write_text("changed\n")
    with pytest.raises(RepoTaskError, match="base_commit"):
        build_repos(tasks[:1], tmp_path / "rebuilt", data_dir=data)


def test_gold_patches_resolve_and_others_do_not(built, tmp_path):
    tasks, repos = built
    for t in tasks:
        iid = t["instance_id"]
        gold = grade(t, t["patch"], repos[iid], tmp_path / iid / "gold")
        assert gold["resolved"] and gold["status"] == "resolved", (iid, gold)
        status = gold["tests_status"]
        assert status["FAIL_TO_PASS"]["success"] == t["FAIL_TO_PASS"]
        assert sorted(status["PASS_TO_PASS"]["success"]) == sorted(t["PASS_TO_PASS"])
    t = tasks[0]
    repo = repos[t["instance_id"]]
    assert grade(t, "", repo, tmp_path / "empty") == {"resolved": False, "status": "empty_patch"}
    readme = ("diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n"
              f"-# {t['repo'].split('/')[-1]}\n+# renamed\n")
    unfixed = grade(t, readme, repo, tmp_path / "readme")
    assert unfixed["status"] == "tests_failed" and not unfixed["resolved"]
    assert unfixed["tests_status"]["FAIL_TO_PASS"]["failure"] == t["FAIL_TO_PASS"]
    broken = grade(t, "diff --git a/nope.py b/nope.py\n--- a/nope.py\n+++ b/nope.py\n@@ -1 +1 @@\n-a\n+b\n", repo,
                   tmp_path / "broken")
    assert broken["status"] == "patch_failed" and not broken["resolved"]
    assert ">>>>> Patch Apply Failed" in (tmp_path / "broken" / "test_output.txt").read_text()


def test_task_files_follow_the_swebench_layout():
    for d in sorted((DATA_DIR / "tasks").iterdir()):
        assert {"task.yaml", "tests.json", "problem_statement.md", "gold.patch", "test.patch", "eval.sh"} <= \
            {p.name for p in d.iterdir()}
        tests = json.loads((d / "tests.json").read_text())
        assert set(tests) == {"FAIL_TO_PASS", "PASS_TO_PASS"}
