"""Grade a coding agent's patch the way SWE-bench does, in a local checkout instead of a container.

The steps are those of ``swebench.harness.run_evaluation.run_instance``, with the package's own pieces:

1. an empty patch is not evaluated (unresolved), as the harness skips empty predictions;
2. a fresh checkout of the task repository at ``base_commit`` (the container's ``/testbed``);
3. the patch is applied with the harness's ``GIT_APPLY_CMDS`` in order (working tree reset between tries);
   if none applies, the log gets ``APPLY_PATCH_FAIL`` and the task is unresolved;
4. the instance's eval script (``make_test_spec(instance).eval_script``: test files reset, test patch applied,
   tests run between the start/end markers, exit status recorded) runs with ``TESTBED`` pointing at the
   checkout, its output is the test log (a run past the time limit writes ``TESTS_TIMEOUT``);
5. ``get_eval_report`` parses the log with the instance's log parser and decides ``resolved`` from
   FAIL_TO_PASS and PASS_TO_PASS.

On a machine with docker and the network, SWE-bench Verified instances go through
``swebench.harness.run_evaluation`` itself; the instance format is the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from continuum_workloads.repo_tasks import checkout

__all__ = ["grade", "tool_env"]


def tool_env() -> dict[str, str]:
    """The environment agents' commands and eval scripts run in: this interpreter's ``python``/``pytest`` first."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "PAGER": "cat",
            "PIP_PROGRESS_BAR": "off", "TQDM_DISABLE": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def _apply(testbed: Path, patch: Path) -> tuple[bool, str]:
    from swebench.harness.run_evaluation import GIT_APPLY_CMDS

    out = ""
    for attempt, cmd in enumerate(GIT_APPLY_CMDS):
        if attempt:  # a failed try can leave half a patch behind
            subprocess.run("git checkout -- . ; git clean -fdq", shell=True, cwd=testbed, capture_output=True)
        p = subprocess.run(f"{cmd} {patch}", shell=True, cwd=testbed, capture_output=True, text=True)
        out = p.stdout + p.stderr
        if p.returncode == 0:
            return True, out
    return False, out


def grade(instance: dict[str, Any], model_patch: str | None, repo: Path, work_dir: Path,
          timeout_s: float = 300.0) -> dict[str, Any]:
    """SWE-bench's verdict on ``model_patch`` for ``instance``: {resolved, status, tests_status?, log}."""
    from swebench.harness.constants import APPLY_PATCH_FAIL, TESTS_TIMEOUT
    from swebench.harness.grading import get_eval_report
    from swebench.harness.utils import make_test_spec

    iid = instance["instance_id"]
    if not (model_patch or "").strip():
        return {"resolved": False, "status": "empty_patch"}
    work_dir.mkdir(parents=True, exist_ok=True)
    spec = make_test_spec(instance)
    testbed = checkout(repo, instance["base_commit"], work_dir / "testbed")
    patch_file = work_dir / "patch.diff"
    patch_file.write_text(model_patch if model_patch.endswith("\n") else model_patch + "\n")
    log = work_dir / "test_output.txt"
    applied, apply_out = _apply(testbed, patch_file)
    if not applied:
        log.write_text(f"{APPLY_PATCH_FAIL}:\n{apply_out}")
        return {"resolved": False, "status": "patch_failed", "log": str(log)}
    script = work_dir / "eval.sh"
    script.write_text(spec.eval_script)
    try:
        p = subprocess.run(["bash", str(script)], cwd=testbed, env={**tool_env(), "TESTBED": str(testbed)},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout_s)
        log.write_text(p.stdout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode("utf-8", "replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        log.write_text(f"{out}\n{TESTS_TIMEOUT}: {timeout_s:.0f} seconds exceeded\n")
    prediction = {"instance_id": iid, "model_name_or_path": "continuum", "model_patch": model_patch}
    report = get_eval_report(spec, prediction, str(log), include_tests_status=True)[iid]
    status = "resolved" if report["resolved"] else ("tests_failed" if report["patch_successfully_applied"]
                                                    else "no_test_output")
    return {"resolved": bool(report["resolved"]), "status": status, "tests_status": report.get("tests_status"),
            "log": str(log)}
