"""The error hierarchy of the consensus layer.

    LedgerError
    ├── DecodeError        bytes that are not a canonical encoding of the expected structure
    ├── ValidationError    a well-formed structure that breaks a stateless rule (validate_basic)
    ├── SignatureError     a signature that does not verify for its domain, chain and key
    └── ProofError         a Merkle or state proof that does not verify

All of them mean "the input was wrong" (a peer's or a client's fault), never a bug of ours: callers turn
them into refusals, never into crashes.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error this package raises on bad input."""


class DecodeError(LedgerError, ValueError):
    """The bytes are not the canonical encoding of the expected structure."""


class ValidationError(LedgerError, ValueError):
    """The structure decodes but breaks a stateless rule."""


class SignatureError(LedgerError):
    """A signature does not verify for its domain, chain id and public key."""


class ProofError(LedgerError):
    """A Merkle inclusion proof or a state proof does not verify."""
