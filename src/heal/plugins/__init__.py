"""Action plugins, each behind the engine's ``ActionPlugin`` protocol."""
