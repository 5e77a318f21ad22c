"""heal: alert-driven self-healing engine."""

__version__ = "0.1.0"
