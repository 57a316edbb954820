"""This folder installs as ``continuum_agents``; ``agents`` is the OpenAI Agents SDK's import name.

Where the repository root is on ``sys.path`` (pytest's root, ``python -m`` or a script run from a clone's root),
a plain ``import agents`` finds this folder before the installed SDK. Its ``__init__`` then calls
:func:`yield_to_sdk`, which loads the SDK under that name instead (the import system hands back whatever
``sys.modules["agents"]`` holds once the ``__init__`` is done), so ``from agents import Agent, Runner`` means
the SDK wherever the code runs.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys


def yield_to_sdk(init_file: str) -> None:
    """Put the installed OpenAI Agents SDK in ``sys.modules["agents"]`` (``init_file``: this folder's __init__)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(init_file)))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != root]
    spec = importlib.machinery.PathFinder.find_spec("agents", path)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError("No module named 'agents' (the OpenAI Agents SDK: pip install openai-agents); "
                                  "this repository's agents/ folder is `continuum_agents`", name="agents")
    sdk = importlib.util.module_from_spec(spec)
    sys.modules["agents"] = sdk  # before it runs: the SDK's own modules import `agents.*`
    try:
        spec.loader.exec_module(sdk)
    except BaseException:
        sys.modules.pop("agents", None)
        raise
