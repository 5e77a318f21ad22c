"""Pure domain core: value objects and state machines. No I/O, no web, no database."""
