"""Settings switch between the embedded mode (no variables) and deployment (DATABASE_URL / REDIS_URL).

Settings are read once at import, so each case starts a fresh interpreter with a controlled environment.
"""
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

# Not marked `embedded`: every case starts its own interpreter with the variables it is about and none of the
# suite's (see `start`), so the mode of the pass running it changes nothing; it runs once, in the deployment pass.

BASE_DIR = Path(__file__).resolve().parents[2]
# Every variable settings.py reads: a case sets only the ones it is about.
SETTINGS_VARIABLES = (
    "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "CONN_MAX_AGE",
    "MEDIA_ROOT", "CHANNELS_PREFIX", "CELERY_TASK_ALWAYS_EAGER", "MINHOS_FEED_STALE_SECONDS", "LOG_LEVEL",
    "DJANGO_SETTINGS_MODULE", "MINHOS_TRUSTED_PROXIES", "MINHOS_INSECURE_HTTP", "MINHOS_HSTS_SECONDS",
    "MINHOS_HSTS_INCLUDE_SUBDOMAINS", "MINHOS_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER", "MINHOS_THROTTLE_ANON",
    "MINHOS_THROTTLE_USER", "MINHOS_THROTTLE_TOKEN", "MINHOS_TOKEN_TTL_HOURS", "MINHOS_LOGIN_FAILURE_LIMIT",
    "MINHOS_LOGIN_COOLOFF_MINUTES", "CACHE_PREFIX",
)
PROBE = """
import json, os
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "minhos_site.settings"
django.setup()
from django.conf import settings as s
db, layer = s.DATABASES["default"], s.CHANNEL_LAYERS["default"]
print(json.dumps({
    "engine": db["ENGINE"], "name": str(db["NAME"]), "host": db.get("HOST"), "port": db.get("PORT"),
    "user": db.get("USER"), "password": db.get("PASSWORD"), "options": db.get("OPTIONS", {}),
    "layer": layer["BACKEND"], "layer_hosts": layer.get("CONFIG", {}).get("hosts"),
    "eager": s.CELERY_TASK_ALWAYS_EAGER, "broker": s.CELERY_BROKER_URL, "result_backend": s.CELERY_RESULT_BACKEND,
    "ignore_result": s.CELERY_TASK_IGNORE_RESULT, "routes": s.CELERY_TASK_ROUTES, "default_queue": s.CELERY_TASK_DEFAULT_QUEUE,
    "acks_late": s.CELERY_TASK_ACKS_LATE, "conn_max_age": db.get("CONN_MAX_AGE"),
    "debug": s.DEBUG, "secret_key": s.SECRET_KEY, "embedded": s.EMBEDDED, "allowed_hosts": s.ALLOWED_HOSTS,
    "https": [s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS],
    "proxy_ssl_header": s.SECURE_PROXY_SSL_HEADER,
}))
"""
POSTGRES_URL = "postgres://trader:s3cret@db.example.internal:5433/minhos_prod"
REDIS_URL = "redis://cache.example.internal:6380/2"
STRONG_KEY = "a-deployment-key-of-fifty-characters-or-more-0123456789"


@pytest.fixture(autouse=True)
def no_dotenv_file():
    # settings.py fills unset variables from BASE_DIR/.env: with one present the cases below are not controlled.
    if (BASE_DIR / ".env").exists():
        pytest.skip("a .env file in the project supplies settings variables")


def start(var_dir: Path, *command: str, **variables: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}
    env.update(MINHOS_VAR_DIR=str(var_dir), **variables)
    return subprocess.run([sys.executable, *(command or ("-c", PROBE))], cwd=BASE_DIR, env=env, capture_output=True,
                          text=True, timeout=120)


def settings_with(var_dir: Path, **variables: str) -> dict:
    process = start(var_dir, **variables)
    assert process.returncode == 0, process.stderr
    return json.loads(process.stdout.strip().splitlines()[-1])


def test_with_no_variables_it_runs_embedded_on_sqlite_in_the_var_dir_with_in_process_layers(tmp_path):
    s = settings_with(tmp_path)

    assert s["embedded"] is True
    assert s["engine"] == "django.db.backends.sqlite3"
    assert Path(s["name"]).parent == tmp_path
    assert s["options"] == {"timeout": 20, "transaction_mode": "IMMEDIATE"}  # shared by web, feed and jobs
    assert s["layer"] == "channels.layers.InMemoryChannelLayer"
    assert s["eager"] is True
    assert (s["broker"], s["result_backend"], s["ignore_result"]) == ("memory://", None, True)
    assert s["debug"] is False


def test_with_no_variables_a_secret_key_is_generated_private_and_kept_across_starts(tmp_path):
    first = settings_with(tmp_path)["secret_key"]

    key_file = tmp_path / "secret_key"
    assert key_file.read_text().strip() == first
    assert len(first) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert settings_with(tmp_path)["secret_key"] == first
    assert settings_with(tmp_path / "elsewhere")["secret_key"] != first


def test_a_secret_key_from_the_environment_wins_and_none_is_written(tmp_path):
    s = settings_with(tmp_path, SECRET_KEY="from-the-environment")

    assert s["secret_key"] == "from-the-environment"
    assert not (tmp_path / "secret_key").exists()


def test_database_url_selects_postgresql_with_its_parts(tmp_path):
    s = settings_with(tmp_path, DATABASE_URL=POSTGRES_URL, SECRET_KEY=STRONG_KEY)

    assert s["embedded"] is False
    assert s["engine"] == "django.db.backends.postgresql"
    assert (s["host"], s["port"], s["name"], s["user"], s["password"]) == (
        "db.example.internal", 5433, "minhos_prod", "trader", "s3cret"
    )
    assert "transaction_mode" not in s["options"]  # the SQLite lock options stay out of PostgreSQL's


def test_redis_url_selects_redis_for_channels_and_celery_and_turns_eager_off(tmp_path):
    s = settings_with(tmp_path, DATABASE_URL=POSTGRES_URL, REDIS_URL=REDIS_URL, SECRET_KEY=STRONG_KEY)

    assert s["layer"] == "minhos_site.channel_layer.RedisChannelLayer"
    assert s["layer_hosts"] == [REDIS_URL]
    assert s["broker"] == REDIS_URL
    # Only a distributed training's member fits store their results (for their chord, joined in Redis); every other
    # task ignores its own, and queueing never waits on the backend (minhos_site/celery_results.py).
    assert (s["result_backend"], s["ignore_result"]) == (
        f"minhos_site.celery_results.ChordRedisBackend+{REDIS_URL}", True)
    assert s["routes"]["trading.tasks.workflow_decide"] == {"queue": "inference"}
    assert s["routes"]["mlcore.tasks.*"] == {"queue": "training"} and s["default_queue"] == "trading"
    assert (s["acks_late"], s["conn_max_age"]) == (True, 300)
    assert s["eager"] is False


def test_database_url_without_a_secret_key_refuses_to_start_naming_it(tmp_path):
    process = start(tmp_path, DATABASE_URL=POSTGRES_URL)

    assert process.returncode != 0
    assert "ImproperlyConfigured" in process.stderr
    assert "SECRET_KEY must be set" in process.stderr
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize(("value", "debug"), [("1", True), ("true", True), ("0", False)])
def test_debug_follows_the_debug_variable(tmp_path, value, debug):
    assert settings_with(tmp_path, DEBUG=value)["debug"] is debug


# --- deployment is secure by default ------------------------------------------------------------------------------

def test_deployment_with_only_the_required_variables_passes_check_deploy(tmp_path):
    process = start(tmp_path, "manage.py", "check", "--deploy", "--fail-level", "WARNING",
                    DATABASE_URL=POSTGRES_URL, REDIS_URL=REDIS_URL, SECRET_KEY=STRONG_KEY)

    assert process.returncode == 0, process.stderr
    s = settings_with(tmp_path, DATABASE_URL=POSTGRES_URL, REDIS_URL=REDIS_URL, SECRET_KEY=STRONG_KEY)
    assert s["https"] == [True, True, True, 31_536_000]  # redirect, Secure cookies, HSTS for a year
    assert "testserver" not in s["allowed_hosts"]
    assert s["proxy_ssl_header"] is None  # a client could set the header itself: opt-in only


@pytest.mark.parametrize("key", [
    "x", "deployment-key", "s3cret" * 8, "ab" * 40, "django-insecure-" + "k3y-0f-d1ff3r3nt-ch4r4ct3rs" * 2,
])
def test_deployment_refuses_a_weak_secret_key_naming_it(tmp_path, key):
    process = start(tmp_path, DATABASE_URL=POSTGRES_URL, SECRET_KEY=key)

    assert process.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is too weak" in process.stderr
    assert repr(key) not in process.stderr  # the refusal does not echo the key


def test_the_plain_http_opt_out_turns_https_off_and_check_deploy_says_so(tmp_path):
    variables = dict(DATABASE_URL=POSTGRES_URL, SECRET_KEY=STRONG_KEY, MINHOS_INSECURE_HTTP="1")

    assert settings_with(tmp_path, **variables)["https"] == [False, False, False, 0]
    process = start(tmp_path, "manage.py", "check", "--deploy", "--fail-level", "WARNING", **variables)
    assert process.returncode != 0
    assert {"security.W004", "security.W008", "security.W012", "security.W016"} <= set(
        re.findall(r"security\.W\d+", process.stderr))


def test_a_tls_terminating_proxy_header_is_configured_by_name(tmp_path):
    s = settings_with(tmp_path, DATABASE_URL=POSTGRES_URL, SECRET_KEY=STRONG_KEY,
                      SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto")

    assert s["proxy_ssl_header"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert s["https"][0] is True


def test_embedded_mode_stays_local_http_and_accepts_any_key(tmp_path):
    s = settings_with(tmp_path, SECRET_KEY="short")

    assert s["https"] == [False, False, False, 0]


def test_throttle_rates_come_from_the_environment_and_a_malformed_one_is_refused_naming_it(tmp_path):
    probe = ("import django, json, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'minhos_site.settings'; django.setup(); "
             "from django.conf import settings as s; print(json.dumps(s.MINHOS_THROTTLE_RATES))")

    process = start(tmp_path, "-c", probe, MINHOS_THROTTLE_USER="off", MINHOS_THROTTLE_TOKEN="3/hour")
    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout.strip().splitlines()[-1]) == {
        "anon": "60/minute", "user": None, "auth-token": "3/hour"}

    refused = start(tmp_path, "-c", probe, MINHOS_THROTTLE_ANON="lots")
    assert refused.returncode != 0
    assert "MINHOS_THROTTLE_ANON must look like 60/minute" in refused.stderr


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("MINHOS_MONITOR_WINDOW_COUNT", "abc", "MINHOS_MONITOR_WINDOW_COUNT must be a whole number > 0, not 'abc'"),
    ("MINHOS_MONITOR_WINDOW_HOURS", "-1", "MINHOS_MONITOR_WINDOW_HOURS must be a number > 0, not '-1'"),
    ("MINHOS_MONITOR_LATENCY_BUDGET_MS", "nan", "MINHOS_MONITOR_LATENCY_BUDGET_MS must be a number > 0, not 'nan'"),
])
def test_absurd_monitoring_settings_are_refused_naming_them(tmp_path, variable, value, message):
    probe = ("import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'minhos_site.settings'; django.setup(); "
             "from django.conf import settings as s; print(s.MINHOS_MONITOR_WINDOW_COUNT)")
    assert start(tmp_path, "-c", probe).stdout.strip().splitlines()[-1] == "500"
    refused = start(tmp_path, "-c", probe, **{variable: value})
    assert refused.returncode != 0 and message in refused.stderr
