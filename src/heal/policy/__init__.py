"""The user's policy: rules, action configs and the node language they are written in."""

from heal.policy.loader import PolicyError, load_policy, load_policy_text
from heal.policy.models import ActionBase, Node, Policy, Rule

__all__ = [
    "ActionBase",
    "Node",
    "Policy",
    "PolicyError",
    "Rule",
    "load_policy",
    "load_policy_text",
]
