"""The installed project is a good citizen: no top-level name of ours shadows a common package, and every
`continuum` verb is found through the entry points, saying which extra to install when one is missing."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from continuum.serve import verbs

CHECK = """
import importlib.util, agents, continuum_agents
print(agents.__file__)
assert hasattr(agents, "Agent") and hasattr(agents, "Runner"), "not the OpenAI Agents SDK"
assert hasattr(continuum_agents, "AgentSession")
for name in ("eval", "workloads"):
    assert importlib.util.find_spec(name) is None, name + " is installed as a top-level package"
print("ok")
"""


def test_the_openai_agents_sdk_and_our_sdk_import_side_by_side(tmp_path):
    # From another folder, so only what is installed is importable (not the repository's folders).
    p = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stdout + p.stderr[-2000:]
    assert "site-packages" in p.stdout.splitlines()[0]


def test_every_verb_is_registered():
    assert [v.name for v in verbs.discover()] == list(verbs.ORDER)


def missing(name: str, value: str) -> verbs.Verb:
    return verbs.load(EntryPoint(name=name, value=value, group=verbs.GROUP))


def test_a_verb_whose_extra_is_missing_says_which_to_install(capsys):
    stand_in = missing("bench", "continuum_eval.not_installed:BenchVerb [eval]")
    parser = verbs.build_parser([stand_in])
    assert "pip install 'continuum[eval]'" in parser.format_help()
    assert verbs.run(parser, ["bench", "--trace", "t.jsonl"]) == 2
    err = capsys.readouterr().err
    assert "continuum bench: needs the eval extra" in err and "pip install 'continuum[eval]'" in err


def test_a_product_verb_that_cannot_import_is_an_error():
    with pytest.raises(ImportError):
        missing("serve", "continuum.serve.not_a_module:ServeVerb")


def test_bad_input_to_a_verb_exits_2_naming_it(capsys):
    class Broken:
        name, passthrough = "broken", False

        def add_to(self, sub):
            return sub.add_parser(self.name)

        def run(self, args, extra):
            raise verbs.VerbError("--x: not a number")

    assert verbs.run(verbs.build_parser([Broken()]), ["broken"]) == 2
    assert "continuum broken: --x: not a number" in capsys.readouterr().err


LOGGING = """
import logging
from continuum.serve.verbs import setup_logging
setup_logging()
setup_logging()  # a second call adds no second handler
logging.getLogger("continuum_eval.sim.sweep").info("[sweep] shown")
logging.getLogger("__main__").info("[main] shown")
logging.getLogger("httpx").info("HTTP Request: hidden")
logging.getLogger("httpx").warning("httpx warning shown")
"""


def test_an_entry_point_shows_our_progress_lines_and_not_other_libraries_info():
    p = subprocess.run([sys.executable, "-c", LOGGING], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines() == ["[sweep] shown", "[main] shown", "httpx warning shown"]
