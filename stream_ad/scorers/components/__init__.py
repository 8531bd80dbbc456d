"""Parts the methods share (anomalib's models/components): the greedy coreset, nearest-neighbour search, the map
blur, taps onto one grid and scores onto the input (maps), streaming per-position moments, and the training loop with
its progress, seeding and resumable checkpoints."""
