"""The password hasher of the test process: Django's PBKDF2-SHA256 at one iteration instead of a million."""
from django.contrib.auth.hashers import PBKDF2PasswordHasher


class OneIterationPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Same algorithm name and format as the production hasher, and the iteration count is part of each hash, so
    a server subprocess started by a test (production settings) still verifies the passwords of users the test
    created; it only costs microseconds instead of ~0.2 s of CPU for every user created and every login."""

    iterations = 1
