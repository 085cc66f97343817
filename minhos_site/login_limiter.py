"""What the login limiter (django-axes) counts a failed login against, besides the client address."""
from django.contrib.auth import get_user_model

USERNAME_FIELD = "username"


def username_tried(request, credentials: dict | None = None) -> str | None:
    """The username of the attempt, cut to the longest a user can have: a longer one names nobody, and axes keeps it
    in a 255-character column, so a 300-character guess on the login page was a 500 on PostgreSQL."""
    if credentials:
        username = credentials.get(USERNAME_FIELD)
    else:
        username = getattr(request, "data", request.POST).get(USERNAME_FIELD)
    if username is None:
        return None
    return str(username)[:get_user_model()._meta.get_field(USERNAME_FIELD).max_length]
