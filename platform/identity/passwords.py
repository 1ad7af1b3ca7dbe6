"""Password hashing (argon2id) and the password rules."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()

MIN_LENGTH = 10
MAX_LENGTH = 256
_COMMON = frozenset(
    """password password1 password123 1234567890 12345678910 qwertyuiop 1q2w3e4r5t
    iloveyou123 letmein123 welcome123 admin12345 passw0rd123 abc1234567""".split()
)


class PasswordRuleError(ValueError):
    pass


def check_password_rules(password: str, *, email: str = "") -> None:
    """Raise PasswordRuleError with a message a person can act on."""
    if len(password) < MIN_LENGTH:
        raise PasswordRuleError(f"Password must be at least {MIN_LENGTH} characters long.")
    if len(password) > MAX_LENGTH:
        raise PasswordRuleError(f"Password must be at most {MAX_LENGTH} characters long.")
    if password.lower() in _COMMON or len(set(password)) < 4:
        raise PasswordRuleError("Password is too easy to guess; choose a less common one.")
    if email and password.lower() == email.lower():
        raise PasswordRuleError("Password must not be your email address.")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# A real hash to verify against when the email is unknown, so timing does not tell
# which emails have accounts.
DUMMY_HASH = _hasher.hash("kith-dummy-password-for-timing")
