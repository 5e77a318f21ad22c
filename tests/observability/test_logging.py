"""Secrets never reach a log line, whoever writes it."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import logging
from heal.domain.redaction import Redactor
from heal.observability import logging as heal_logging
heal_logging.configure("INFO")
heal_logging.set_redactor(Redactor(["topsecret-123"]))
heal_logging.get_logger("heal.test").warning("calling", url="https://x/bottopsecret-123/send")
logging.getLogger("uvicorn.error").warning("token=%s rejected", "topsecret-123")
"""


def test_secrets_are_masked_in_heal_and_library_log_lines() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    printed = done.stdout + done.stderr
    assert "topsecret-123" not in printed
    assert "https://x/bot***/send" in printed
    assert "token=*** rejected" in printed
