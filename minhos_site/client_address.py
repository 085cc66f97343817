"""The client's address as recorded in the audit trail and counted by the login limiter."""
import ipaddress


def client_address(request) -> str | None:
    """REMOTE_ADDR when it is an IP address (normalised, without an IPv6 zone), else None.

    The ASGI server fills REMOTE_ADDR with the peer's address, or with the one a trusted proxy forwarded when
    MINHOS_TRUSTED_PROXIES lists that proxy; forwarded headers are never read here, so a client cannot choose
    what is recorded. Anything that is not an address (a header passed through as is) is dropped, not stored.
    """
    value = str(request.META.get("REMOTE_ADDR") or "").strip()
    try:
        address = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    return str(address)
