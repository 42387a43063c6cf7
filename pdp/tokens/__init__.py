"""Verified tokens (SPEC §8): the trust file, token verification, binding and the gate.

``load_trust(FILE)`` reads a trust file; ``TokenGate(trust).check(request)`` is a request's
verified token (its ``view`` is the language's root ``token``), None, or raises ``Rejected``.
"""

from .gate import TOKEN_RULE, TokenGate
from .trust import Issuer, Trust, load_trust
from .verify import Rejected, Verified

__all__ = ["TOKEN_RULE", "Issuer", "Rejected", "TokenGate", "Trust", "Verified", "load_trust"]
