"""Real agents (mini-swe-agent on shipped repository tasks, BFCL multi-turn entries on bfcl-eval's own loop)
against each policy's server, graded by their own checkers, answers compared across policies."""
