"""The client address in the audit trail is the one the server resolved, and only if it is an IP address:
a REMOTE_ADDR passed through from a forged header is not stored (and is no 500 on PostgreSQL's inet column)."""
import pytest
from django.test import Client
from rest_framework.test import APIClient

from trading import services
from trading.models import AuditEvent
from trading.tests.decisions import user_with

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.mark.parametrize(("remote_addr", "recorded"), [
    ("not-an-ip", None), ("6.6.6.6, 10.0.0.1", None), ("", None), ("2001:DB8::0001", "2001:db8::1"),
    ("fe80::1%eth0", "fe80::1"), ("198.51.100.7", "198.51.100.7"),
])
def test_the_api_records_the_client_address_only_when_it_is_an_ip_address(remote_addr, recorded):
    client = APIClient(REMOTE_ADDR=remote_addr)
    client.force_login(user_with("controller", "trading.engage_kill_switch"))

    response = client.post("/api/kill-switch/", {"engaged": True, "reason": "drill"}, format="json")

    assert response.status_code == 200
    assert AuditEvent.objects.get(action=AuditEvent.Action.KILL_SWITCH).client_address == recorded


def test_the_admin_records_the_client_address_only_when_it_is_an_ip_address(admin_user):
    account = services.account_default_get()
    client = Client(REMOTE_ADDR="not-an-ip")
    client.force_login(admin_user)

    response = client.post("/admin/trading/account/", {"action": "auto_trading_on", "_selected_action": [account.pk]})

    assert response.status_code == 302
    audit = AuditEvent.objects.get(action=AuditEvent.Action.AUTO_TRADING)
    assert (audit.state_after, audit.client_address) == ("on", None)
