"""What a step costs: hardware and model shapes (`specs`), execution-time predictors (`costmodel`) and the
named profiles the simulator runs with (`profiles`)."""
