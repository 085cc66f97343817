"""Template tags of monitoring: the alerts strip that base.html shows on every logged-in page (loaded by name, so
the pages of other apps show it without importing monitoring)."""
from django import template
from django.urls import reverse
from django.utils.http import urlencode

from .. import page

register = template.Library()


@register.inclusion_tag("monitoring/_alerts_strip.html", takes_context=True)
def alerts_strip(context):
    """The unresolved alerts by severity and the newest one; live updates come over the page's websocket."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"strip": None}
    return {"strip": page.alerts_strip(), "link": monitoring_link(context)}


@register.simple_tag(takes_context=True)
def monitoring_link(context, anchor: str = "alerts") -> str:
    """The monitoring page of the market the current page shows (its `instrument` and `timeframe`), else the
    default market's."""
    instrument, timeframe = context.get("instrument"), context.get("timeframe")
    query = f"?{urlencode({'symbol': instrument.symbol, 'timeframe': timeframe})}" if instrument and timeframe else ""
    return reverse("monitoring") + query + (f"#{anchor}" if anchor else "")
