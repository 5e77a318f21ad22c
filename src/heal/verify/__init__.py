"""Verification of fixes: did a successful action make its incident go away and stay away."""
