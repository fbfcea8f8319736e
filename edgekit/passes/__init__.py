"""Backend-independent passes: one artifact in, one new artifact out. Importing this package registers them.

Conversion passes live with their backend (edgekit/backends/<name>/) and register when edgekit.backends is imported;
`edgekit.passes.base.REGISTRY` then holds every pass.
"""

from edgekit.passes import distill, fold_bn, identity, prune, qcfs  # noqa: F401  (registration)
from edgekit.passes.base import REGISTRY, Pass

__all__ = ["REGISTRY", "Pass"]
