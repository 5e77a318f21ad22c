"""The ``kubernetes`` action type: restart, scale or roll back a workload (lightkube).

Each action runs as three persisted steps: ``dry_run`` (the request worked out and
dry-run by the server), ``apply`` (that request, sent for real) and ``wait`` (polled, as
kubectl rollout status). See docs/executors.md, "Kubernetes".
"""

from heal.plugins.kubernetes.plugin import KubernetesPlugin

__all__ = ["KubernetesPlugin"]
