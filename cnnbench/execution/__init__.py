"""Execution: how planned cells are run: the executor seam, the runner and its worker processes, layer
timing, verification, cooldown and progress, and the grid session that meters and stores a run."""
