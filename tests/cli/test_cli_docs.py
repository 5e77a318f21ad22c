"""README and docs agree with the code: every setting, the exit codes, the policy's limits."""

from __future__ import annotations

import re
from pathlib import Path

from heal.policy.models import ApprovalRequirement
from heal.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DOCS = README + "".join(path.read_text() for path in sorted((ROOT / "docs").glob("*.md")))


def test_every_setting_is_documented() -> None:
    missing = [f"HEAL_{name.upper()}" for name in Settings.model_fields]
    assert [variable for variable in missing if variable not in DOCS] == []


def test_the_exit_codes_are_documented() -> None:
    table = README[README.index("Exit codes:") :]
    for code in ("0", "1", "2", "3", "130"):
        assert re.search(rf"^\| {code} \| \w", table, re.MULTILINE), code


def test_links_stay_inside_the_repository() -> None:
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)", path.read_text()):
            if "://" in target:
                continue
            assert (path.parent / target).resolve().is_relative_to(ROOT), (path.name, target)


def _bounds(field: str) -> tuple[int, int]:
    metadata = ApprovalRequirement.model_fields[field].metadata
    low = next(item.ge for item in metadata if hasattr(item, "ge"))
    high = next(item.le for item in metadata if hasattr(item, "le"))
    return low, high


def test_the_approval_limits_are_documented() -> None:
    approvals = (ROOT / "docs" / "approvals.md").read_text()
    low, high = _bounds("required_signatures")
    assert f"required_signatures: 2      # quorum: {low} to {high}" in approvals
    low, high = _bounds("expires_in")
    assert f"seconds: {low} (1 min) to {high} (7 days)" in approvals


def test_the_tour_shows_the_approvals_table_as_it_is() -> None:
    # The columns of `heal approvals list` (test_cli_help checks them), in their order.
    comment = next(line for line in README.splitlines() if "heal approvals list  " in line)
    words = ["approval 1", "pending", "action 2", "incident 2", "risk medium", "quorum 1"]
    positions = [comment.index(word) for word in words]
    assert positions == sorted(positions)
