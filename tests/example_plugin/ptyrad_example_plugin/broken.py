"""A plugin module that fails to import: discovery must record it and carry on."""

raise ImportError("this example plugin is broken on purpose")
