"""Between the API process and the engine core: `channel` (a small ZeroMQ request/reply channel), `messages`
(its typed requests and replies), `engine_side` (what the engine answers, under the scheduler's lock) and `dp`
(one channel per data-parallel rank, and stats merged across ranks)."""
