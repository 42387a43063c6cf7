"""pdp: a policy decision point for machine-to-machine APIs."""

from .errors import PolicyError, RequestError

__version__ = "0.1.0"

__all__ = ["PolicyError", "RequestError", "__version__"]
