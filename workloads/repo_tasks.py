"""Small repository tasks for coding agents, in SWE-bench's instance format, built into real git repositories.

The tasks ship in ``workloads/data/swe_tasks/`` in the task-repo layout of the ``swebench`` package
(``swebench.task.repo``: ``tasks/<instance_id>/`` with ``task.yaml``, ``tests.json``, ``problem_statement.md``,
``gold.patch``, ``test.patch``, ``eval.sh``), so :func:`load_tasks` returns the instance dicts SWE-bench's
harness reads: ``instance_id``, ``repo``, ``base_commit``, ``problem_statement``, ``patch`` (the reference fix),
``test_patch``, ``FAIL_TO_PASS``, ``PASS_TO_PASS``, plus ``image`` / ``eval_script`` / ``log_parser`` /
``eval_type`` for ``swebench.harness.utils.make_test_spec``. Each task's repository is a tiny Python package
with a bug, a passing test suite and an issue text; the test patch adds the failing test.

SWE-bench names a GitHub repository and a commit; here ``repos/<name>/`` holds the source at the base commit,
and :func:`build_repos` turns each into a git repository with one commit whose author, committer and dates are
fixed, so its hash is the ``base_commit`` the task names (checked: a mismatch is an error, not a silent
regrade). The repositories are built into a git-ignored folder (``$CONTINUUM_TASKS_DIR``, else ``.tasks/`` at
the project root) the first time they are needed; :func:`checkout` clones one for an agent run or a grading.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Sequence

__all__ = ["DATA_DIR", "RepoTaskError", "tasks_dir", "load_tasks", "build_repos", "checkout", "repo_name"]

DATA_DIR = Path(__file__).resolve().parent / "data" / "swe_tasks"
_PROJECT_ROOT = Path(__file__).resolve().parents[1]
# One fixed identity and date: the same files always give the same commit hash.
_GIT_ENV = {"GIT_AUTHOR_NAME": "Continuum Tasks", "GIT_AUTHOR_EMAIL": "tasks@continuum.invalid",
            "GIT_COMMITTER_NAME": "Continuum Tasks", "GIT_COMMITTER_EMAIL": "tasks@continuum.invalid",
            "GIT_AUTHOR_DATE": "2025-01-01T00:00:00+0000", "GIT_COMMITTER_DATE": "2025-01-01T00:00:00+0000"}
_GIT_CONFIG = ["-c", "commit.gpgsign=false", "-c", "core.autocrlf=false", "-c", "init.defaultBranch=main"]


class RepoTaskError(RuntimeError):
    """A task or its repository is missing or does not match its base commit."""


def tasks_dir() -> Path:
    """Where the task repositories are built: $CONTINUUM_TASKS_DIR, else ``.tasks`` at the project root."""
    return Path(os.environ.get("CONTINUUM_TASKS_DIR", _PROJECT_ROOT / ".tasks"))


def repo_name(instance: dict[str, Any]) -> str:
    """``continuum-tasks/chunker`` -> ``chunker``."""
    return instance["repo"].rsplit("/", 1)[-1]


def load_tasks(limit: int | None = None, instance_ids: Sequence[str] | None = None,
               data_dir: Path = DATA_DIR) -> list[dict[str, Any]]:
    """The shipped tasks as SWE-bench instance dicts (sorted by id; the first ``limit``)."""
    from swebench.task.repo import load_task_repo

    try:
        tasks = load_task_repo(data_dir, list(instance_ids) if instance_ids else None)
    except (KeyError, FileNotFoundError) as exc:
        raise RepoTaskError(str(exc).strip("'\"")) from None
    return tasks[:limit] if limit else tasks


def _git(args: list[str], cwd: Path) -> str:
    p = subprocess.run(["git", *_GIT_CONFIG, *args], cwd=cwd, capture_output=True, text=True,
                       env={**os.environ, **_GIT_ENV})
    if p.returncode != 0:
        raise RepoTaskError(f"git {' '.join(args)} in {cwd}: {(p.stderr or p.stdout).strip()[:300]}")
    return p.stdout.strip()


def _build_one(src: Path, dest: Path) -> str:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _git(["init", "-q"], tmp)
    _git(["add", "-A"], tmp)
    _git(["commit", "-q", "-m", f"{src.name}: base"], tmp)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return _git(["rev-parse", "HEAD"], dest)


def build_repos(tasks: Sequence[dict[str, Any]], dest: Path | None = None, data_dir: Path = DATA_DIR,
                force: bool = False) -> dict[str, Path]:
    """Build (or reuse) each task's repository; returns instance_id -> repository path.

    A repository already built at its base commit is reused; one that is not is rebuilt; one whose rebuilt
    commit is not the task's ``base_commit`` (the shipped source was changed) is an error.
    """
    dest = Path(dest or tasks_dir()).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for task in tasks:
        name = repo_name(task)
        path = dest / name
        have = _head(path) if not force else None
        if have != task["base_commit"]:
            src = data_dir / "repos" / name
            if not src.is_dir():
                raise RepoTaskError(f"{task['instance_id']}: no repository source at {src}")
            have = _build_one(src, path)
        if have != task["base_commit"]:
            raise RepoTaskError(f"{task['instance_id']}: built {name} at {have}, but the task's base_commit is "
                                f"{task['base_commit']} (was {src} changed?)")
        out[task["instance_id"]] = path
    return out


def _head(path: Path) -> str | None:
    if not (path / ".git").exists():
        return None
    try:
        return _git(["rev-parse", "HEAD"], path)
    except RepoTaskError:
        return None


def checkout(repo: Path, commit: str, dest: Path) -> Path:
    """A fresh working copy of ``repo`` at ``commit`` in ``dest`` (replaced if it exists)."""
    dest = Path(dest).resolve()
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _git(["clone", "-q", "--no-hardlinks", str(repo), str(dest)], dest.parent)
    _git(["checkout", "-q", commit], dest)
    return dest
