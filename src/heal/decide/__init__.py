"""Deciding what to do for an incident: playbooks, an LLM, expert rules, within a budget."""
