"""Approvals: one model, many channels (API, CLI, chat buttons, ITSM tickets)."""
