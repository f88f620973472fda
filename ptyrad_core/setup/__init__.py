"""From a config to data and an initialised model: optics, scan, sources, memory, checks."""
