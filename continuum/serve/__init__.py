"""The `continuum` command line and `continuum serve`: `cli` (the verbs), `server` (vLLM's OpenAI server with
the Continuum scheduler and middleware plugged in), `models` (embedded models built at set-up), `launch`
(a server as a child process), `tether` (which ends that child if its parent dies), `engine_priority` (the engine
core's nice level on CPU), `argtypes`."""
