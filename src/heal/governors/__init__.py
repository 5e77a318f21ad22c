"""Safety governors: what may start, how often, and how many at once.

- ``leases``: per-target concurrency, a row per held slot of a target (``target_leases``),
  taken before an action's first step and given back in the commit that ends it.
- ``limits``: the check at creation (rate limits per action and target, the global budget,
  an open circuit breaker), counted from the action rows.
- ``breakers``: circuit breakers per action and target, opened from failures and
  ineffective outcomes in the rows, reset by a cooldown or an operator.
- ``hook``: the engine's start guard and the transition hook that gives leases back and
  opens breakers.

Everything is a row, so it holds across processes and workers.
"""
