"""The step engine: one durable wake per action (DESIGN.md, "The step engine")."""
