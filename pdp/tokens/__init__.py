"""Verified tokens (SPEC §8): the trust file, token verification, binding and the gate.

``load_trust(FILE)`` reads a trust file; ``TokenGate(trust).check(request)`` is a request's
verified token (its ``view`` is the language's root ``token``), None, or raises ``Rejected``.
"""

from .gate import TokenGate
from .trust import Issuer, Trust, load_trust
from .verify import Rejected, Verified

#: The rule id of the single reason of a decision whose token was rejected.
TOKEN_RULE = "pdp.token"

__all__ = ["TOKEN_RULE", "Issuer", "Rejected", "TokenGate", "Trust", "Verified", "load_trust"]
