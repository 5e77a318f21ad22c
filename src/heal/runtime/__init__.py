"""Where wakes run. The engine sees only the ``WakeScheduler`` protocol."""
