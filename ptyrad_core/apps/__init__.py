"""Tools on top of the engine: the command line, tuning, simulation, reports, viewers."""
