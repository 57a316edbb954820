"""Policies, with no vLLM import: `registry` (components, knobs, kinds; a leaf), `config` (the validated settings
one server runs with), `presets` (named compositions and `resolve`), `flags` (the component flags every entry
point shares)."""
