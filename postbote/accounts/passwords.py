"""Password hashing with argon2id (RFC 9106), the one scheme postbote stores.

Hashing is deliberately slow and memory-hard; callers on the event loop run
these functions in the executor.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# RFC 9106 §4, the second recommended option (64 MiB, 3 passes), which keeps
# a verification around 50 ms on one core.
_hasher = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=1)

# A hash of a random secret: verifying unknown users against it costs the same
# time as a real verification, so timing does not reveal which accounts exist.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))

MIN_PASSWORD_LENGTH = 8


class PasswordPolicyError(ValueError):
    pass


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(f"password too short: at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if ``password`` matches; a missing hash still costs a verification."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def generate_app_password() -> str:
    """A random app password, grouped for reading aloud: xxxx-xxxx-xxxx-xxxx."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(16))
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))
