"""The optimizer loop, data-parallel runs, result and checkpoint files, output folders."""
