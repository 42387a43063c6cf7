"""OpenID AuthZEN Authorization API 1.0 (SPEC §10), independent of any HTTP server.

``mapping`` turns AuthZEN request bodies into pdp requests and decisions into AuthZEN answers;
``search`` answers subject, resource and action searches from the sets a policy set declares.
``pdp.server.authzen`` adds the server's limits, decision log and metrics, and
``pdp.server.http`` serves it over HTTP.
"""

from .mapping import BadRequest, answer, batch, to_request

__all__ = ["BadRequest", "answer", "batch", "to_request"]
