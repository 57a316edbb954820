"""What a run produces: `metrics` (per-program records into the result JSON) and `report` (tables, ratios,
PNG plots)."""
