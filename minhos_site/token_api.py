"""POST /api/auth/token/: a token for a username and password, throttled, behind the login limiter, rotatable."""
from django.contrib.auth import get_user_model
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.response import Response

from minhos_site.api_auth import TokenObtainRateThrottle, token_issue
from minhos_site.api_fields import PlainCharField
from minhos_site.login_limiter import lockout_seconds_left
from minhos_site.parsers import PARSER_CLASSES


class TokenObtainSerializer(AuthTokenSerializer):
    # As the login form: no user has a longer name, and the login limiter's record of a failure would overflow.
    username = PlainCharField(label="Username", write_only=True,
                              max_length=get_user_model()._meta.get_field("username").max_length)
    rotate = serializers.BooleanField(default=False, help_text="Replace the current token with a new one.")


class TokenObtainApi(ObtainAuthToken):
    """A token for a username and password. Throttled per client address (scope "auth-token"); the login limiter
    (django-axes) refuses a username from an address after too many failures, with 429 for the cool-off."""

    authentication_classes = ()
    parser_classes = PARSER_CLASSES  # ObtainAuthToken names DRF's own, which a deep JSON body crashed
    throttle_classes = (TokenObtainRateThrottle,)
    serializer_class = TokenObtainSerializer

    @extend_schema(
        request=TokenObtainSerializer,
        responses={
            200: inline_serializer("TokenObtained", {"token": serializers.CharField()}),
            400: OpenApiResponse(description="Wrong username or password, or a field missing."),
            429: OpenApiResponse(description="Too many attempts from this address, or too many failed logins for "
                                             "this username from it: Retry-After gives the seconds to wait."),
        },
        description="Tokens expire after MINHOS_TOKEN_TTL_HOURS (0: never); asking again after that, or with "
                    "rotate=true, gives a new one and the old one stops working.",
    )
    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        if not serializer.is_valid():
            if getattr(request, "axes_locked_out", False):
                seconds = lockout_seconds_left(request, getattr(request, "axes_credentials", None))
                return Response({"detail": "Too many failed logins for this username from this address; try again "
                                           f"in {seconds} s."},
                                status=status.HTTP_429_TOO_MANY_REQUESTS, headers={"Retry-After": str(seconds)})
            return Response(serializer.errors, status=status.HTTP_400_BAD_REQUEST)
        token = token_issue(user=serializer.validated_data["user"], rotate=serializer.validated_data["rotate"])
        return Response({"token": token.key})
