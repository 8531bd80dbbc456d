"""Parts the methods share (anomalib's models/components): the greedy coreset, nearest-neighbour search, the map
blur, and the training loop with its progress, seeding and resumable checkpoints."""
