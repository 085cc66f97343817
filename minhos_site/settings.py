"""Settings from the environment: embedded mode with no variables, deployment with DATABASE_URL / REDIS_URL."""
import os
import re
import secrets
from datetime import timedelta
from pathlib import Path

import environ
import plotly
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A .env file is optional; real environment variables win over it.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env("MINHOS_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DATABASE_URL = env("DATABASE_URL", default="")
REDIS_URL = env("REDIS_URL", default="")
# Deployment = an external database; embedded = SQLite + in-memory layers, one process.
EMBEDDED = not DATABASE_URL

DEBUG = env.bool("DEBUG", default=False)


def _embedded_secret_key() -> str:
    """A key generated once and kept under var/, so sessions survive restarts without configuration."""
    key_file = VAR_DIR / "secret_key"
    try:
        # Created exclusively with mode 600: never readable by others, and two first starts agree on one key.
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


def _refuse_a_weak_secret_key(key: str) -> None:
    """Deployment refuses to start on a key Django's own check (security.W009) calls weak: it signs sessions."""
    if (len(key) < SECRET_KEY_MIN_LENGTH or len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
            or key.startswith(SECRET_KEY_INSECURE_PREFIX)):
        raise ImproperlyConfigured(
            f"SECRET_KEY is too weak for deployment mode: it needs at least {SECRET_KEY_MIN_LENGTH} characters, "
            f"{SECRET_KEY_MIN_UNIQUE_CHARACTERS} different ones, and no '{SECRET_KEY_INSECURE_PREFIX}' prefix. "
            "Make one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )


SECRET_KEY = env("SECRET_KEY", default="")
if not SECRET_KEY:
    if not EMBEDDED:
        raise ImproperlyConfigured("SECRET_KEY must be set when DATABASE_URL is set (deployment mode).")
    SECRET_KEY = _embedded_secret_key()
elif not EMBEDDED:
    _refuse_a_weak_secret_key(SECRET_KEY)

# Django's test client adds "testserver" itself; a deployment has no reason to answer to it.
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]",
                                                   *(["testserver"] if EMBEDDED else [])])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Addresses or networks of reverse proxies whose X-Forwarded-For / X-Forwarded-Proto the web server believes
# (`start` and the Procfile pass them to uvicorn); none by default, so a client cannot choose its recorded address.
MINHOS_TRUSTED_PROXIES = env.list("MINHOS_TRUSTED_PROXIES", default=[])

# Deployment is HTTPS only: plain HTTP is redirected, cookies are Secure, browsers are told to stay on HTTPS (HSTS).
# MINHOS_INSECURE_HTTP=1 is the explicit opt-out for plain HTTP on a private host (and for the test suite, which
# talks plain HTTP to 127.0.0.1); the web process logs a warning when it is on. Embedded mode is local HTTP.
MINHOS_INSECURE_HTTP = not EMBEDDED and env.bool("MINHOS_INSECURE_HTTP", default=False)
HTTPS_ONLY = not EMBEDDED and not MINHOS_INSECURE_HTTP
SECURE_SSL_REDIRECT = HTTPS_ONLY
# Probes of process managers and load balancers, and Prometheus, talk to the app directly.
SECURE_REDIRECT_EXEMPT = [r"^(healthz|readyz|metrics)$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS_ONLY
SECURE_HSTS_SECONDS = env.int("MINHOS_HSTS_SECONDS", default=31_536_000) if HTTPS_ONLY else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("MINHOS_HSTS_INCLUDE_SUBDOMAINS", default=True)
# Preloading puts the domain on browsers' built-in lists, which is the domain owner's decision: opt in.
SECURE_HSTS_PRELOAD = env.bool("MINHOS_HSTS_PRELOAD", default=False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
# Behind a TLS-terminating proxy that sets this header (e.g. SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto), a request
# carrying "https" in it counts as secure. Only when the proxy overwrites the header: a client could send it too.
_proxy_ssl_header = env.str("SECURE_PROXY_SSL_HEADER", default="")
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https") if _proxy_ssl_header else None
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",
    "axes",
    "trading",
    "mlcore",
    "monitoring",
]

MIDDLEWARE = [
    # A request that fails because the database cannot be reached answers 503 saying so, not a 500 and a traceback.
    "minhos_site.database_outage.DatabaseOutageMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks: turns a lockout into its 429 answer
]

ROOT_URLCONF = "minhos_site.urls"
ASGI_APPLICATION = "minhos_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db_url_config(DATABASE_URL or f"sqlite:///{VAR_DIR / 'minhos.sqlite3'}")}
# Connections are kept between requests and tasks in deployment (a new PostgreSQL connection costs ~10 ms, more than
# a per-bar task's work) and checked before reuse, so a restarted database costs one retry, not an error per process.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0 if not DATABASE_URL else 300)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if EMBEDDED:
    # The web server, the feed and the periodic jobs share one SQLite file: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The login limiter (django-axes) sees every password check first: the login page, the admin's, the token endpoint.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
# After MINHOS_LOGIN_FAILURE_LIMIT wrong passwords for one username from one address, that pair is refused (429)
# until MINHOS_LOGIN_COOLOFF_MINUTES pass; a further failure meanwhile starts the cool-off again; a success resets.
AXES_FAILURE_LIMIT = env.int("MINHOS_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("MINHOS_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The address the server resolved (minhos_site/client_address.py), never a header a client can write.
AXES_CLIENT_IP_CALLABLE = "minhos_site.client_address.client_address"
AXES_USERNAME_CALLABLE = "minhos_site.login_limiter.username_tried"
# The lockout's 429 says when to try again (Retry-After, in seconds), as the throttles' 429 does.
AXES_LOCKOUT_CALLABLE = "minhos_site.login_limiter.lockout_response"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns at start-up when it is missing
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # Plotly.js straight from the installed plotly package: no CDN, no copy in the repository.
    ("vendor/plotly", Path(plotly.__file__).parent / "package_data"),
]
# Served from finders so a fresh embedded start needs no collectstatic; deployment may still collect.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Artifacts (model files later) go through the storage API so a shared store can replace the folder.
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "media/"

# The throttles count here: Redis in deployment, so every web process and machine shares one count. While Redis
# cannot be reached they count in the process instead (minhos_site/shared_cache.py); the timeouts bound what a
# request pays to find out that it is down.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "KEY_PREFIX": env("CACHE_PREFIX", default="minhos"),
                          "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1}}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels_redis with its blocking receive (BZPOPMIN) a quarter of redis-py's 5 s read timeout: equal,
            # a market with nothing pushed for 5 s lost the race under load and its dashboards were closed with 4503.
            "BACKEND": "minhos_site.channel_layer.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL],
                       "prefix": env("CHANNELS_PREFIX", default="minhos")},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
# Task results are not stored (the workflow's progress is in PostgreSQL), except the member fits of a distributed
# training (mlcore.distributed, `ignore_result=False`), which their chord joins in Redis; queueing a task never waits
# on the result backend (minhos_site/celery_results.py). Embedded mode has none: its chords run inline.
CELERY_RESULT_BACKEND = f"minhos_site.celery_results.ChordRedisBackend+{REDIS_URL}" if REDIS_URL else None
CELERY_TASK_IGNORE_RESULT = True
# Without a broker there is no worker: tasks run inline in the calling process.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TIMEZONE = "UTC"
# One queue per kind of work, so a long training never holds up a prediction (the Procfile starts a worker each).
CELERY_TASK_DEFAULT_QUEUE = "trading"
CELERY_TASK_ROUTES = {
    "trading.tasks.workflow_decide": {"queue": "inference"},
    "mlcore.tasks.*": {"queue": "training"},
    # A backtest replays thousands of bars: long work, on the training workers, never in front of live bars.
    "trading.tasks.backtest_run": {"queue": "training"},
    "monitoring.tasks.*": {"queue": "monitoring"},
    # Short: they record requests and decisions (the trainings they start go to the training queue).
    "mlcore.tasks.retrain_scheduled": {"queue": "monitoring"},
    "mlcore.tasks.shadow_advance": {"queue": "monitoring"},
}
# Each gets a heartbeat task from beat (/healthz, /readyz and the "Worker down" alert read them).
CELERY_QUEUES_SERVED = ("trading", "inference", "training", "monitoring")
MINHOS_WORKER_HEARTBEAT_SECONDS = env.float("MINHOS_WORKER_HEARTBEAT_SECONDS", default=5.0)
# A queue whose heartbeat is older than this has no live worker for /healthz and /readyz (six missed beats).
MINHOS_WORKER_STALE_SECONDS = env.float("MINHOS_WORKER_STALE_SECONDS", default=30.0)
# Tasks are idempotent and acknowledged when done: a killed worker's task is delivered again, not lost. A worker
# takes one task at a time per process, so a long one does not hold others it had prefetched.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis redelivers a task not acknowledged within the visibility timeout: it must outlast the longest task (a
# training, limited to 3 h 5 min), or a running training would be started twice. Per-bar steps do not wait for it:
# the workflow's sweeper re-drives a stalled bar within MINHOS_WORKFLOW_REDRIVE_SECONDS.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("MINHOS_VISIBILITY_TIMEOUT", default=4 * 3600),
    "socket_connect_timeout": 2,
    "socket_timeout": 10,
    # Queueing a task tries the broker once rather than retrying for seconds: the feed must never wait on Redis
    # (a step that cannot be queued is re-driven by the sweeper). Workers reconnect by their own settings below.
    "max_retries": 1,
    "interval_start": 0,
}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # a worker waits for Redis to come back rather than exiting
# A task running when the broker connection drops runs to its end (it is idempotent; a duplicate delivery changes
# nothing). Cancelling it instead takes a path on which the worker process itself dies (celery#7185, #9250: seen here
# as "'NoneType' object has no attribute 'hostname'" in kombu's Redis Channel.close during a Redis outage).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# django-celery-beat's database scheduler, told to log a broker outage in a few lines rather than a traceback per
# send (one line when it starts, one every MINHOS_BEAT_FAILURE_SUMMARY_SECONDS with a count, one when it ends), and
# to run the jobs of MINHOS_BEAT_RUNS_HERE itself: the check that a queue has no live worker cannot wait in that
# queue (minhos_site/beat.py).
CELERY_BEAT_SCHEDULER = "minhos_site.beat:Scheduler"
MINHOS_BEAT_FAILURE_SUMMARY_SECONDS = env.float("MINHOS_BEAT_FAILURE_SUMMARY_SECONDS", default=30.0)
# The worker-down check, and the feed status push that carries the workers' state to the dashboards (on the trading
# queue it stopped with the trading worker, and the page showed its workers up).
MINHOS_BEAT_RUNS_HERE = ("monitoring.tasks.workers_check", "trading.tasks.feed_status_broadcast")
MINHOS_WORKFLOW_REDRIVE_SECONDS = env.float("MINHOS_WORKFLOW_REDRIVE_SECONDS", default=10.0)
CELERY_BEAT_SCHEDULE = {
    "feed-status-broadcast": {"task": "trading.tasks.feed_status_broadcast", "schedule": 5.0},
    # Each stage of the per-bar workflow is swept on the queue of the step it waits for.
    "workflow-sweep-stored": {"task": "trading.tasks.workflow_sweep", "schedule": 2.0,
                              "kwargs": {"stage": "stored"}, "options": {"queue": "trading", "expires": 10}},
    "workflow-sweep-settled": {"task": "trading.tasks.workflow_sweep", "schedule": 2.0,
                               "kwargs": {"stage": "settled"}, "options": {"queue": "inference", "expires": 10}},
    # Monitoring: a snapshot of every market's active version (health, metrics, drift, alerts).
    "monitoring-snapshot": {"task": "monitoring.tasks.snapshot_all",
                            "schedule": env.float("MINHOS_MONITOR_SNAPSHOT_SECONDS", default=60.0),
                            "options": {"queue": "monitoring", "expires": 60}},
    # Retraining: shadow runs whose live record is complete are decided. (The nightly retraining itself is a
    # database entry, "retrain-nightly", made by a migration so its time can be edited in the admin.)
    "backtests-abandoned": {"task": "trading.tasks.backtests_abandoned", "schedule": 60.0,
                            "options": {"queue": "trading", "expires": 60}},
    "retraining-shadow-advance": {"task": "mlcore.tasks.shadow_advance",
                                  "schedule": env.float("MINHOS_SHADOW_ADVANCE_SECONDS", default=60.0),
                                  "options": {"queue": "monitoring", "expires": 60}},
    **{f"worker-heartbeat-{queue}": {"task": "trading.tasks.worker_heartbeat",
                                     "schedule": MINHOS_WORKER_HEARTBEAT_SECONDS, "args": (queue,),
                                     "options": {"queue": queue, "expires": 2 * MINHOS_WORKER_HEARTBEAT_SECONDS}}
       for queue in CELERY_QUEUES_SERVED},
    # Opens and resolves the "Worker down" alert from the heartbeats: run by beat itself (MINHOS_BEAT_RUNS_HERE).
    "workers-check": {"task": "monitoring.tasks.workers_check", "schedule": MINHOS_WORKER_HEARTBEAT_SECONDS},
}


def _throttle_rate(variable: str, default: str) -> str | None:
    """A rate such as "60/minute" (per second, minute, hour or day) from the variable; "off" turns it off."""
    rate = env.str(variable, default=default).strip()
    if rate.lower() == "off":
        return None
    if not re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)", rate):
        raise ImproperlyConfigured(f"{variable} must look like 60/minute (or off), not {rate!r}")
    return rate


# API request rates (DRF throttles; a 429 past them), read on each request from here so a test can raise them.
MINHOS_THROTTLE_RATES = {
    "anon": _throttle_rate("MINHOS_THROTTLE_ANON", "60/minute"),  # per client address, without a login
    "user": _throttle_rate("MINHOS_THROTTLE_USER", "600/minute"),  # per logged-in user
    "auth-token": _throttle_rate("MINHOS_THROTTLE_TOKEN", "10/minute"),  # POST /api/auth/token/, per address
}
# API tokens older than this are refused (0: never); asking for a token again then gives a new one.
MINHOS_TOKEN_TTL_HOURS = env.float("MINHOS_TOKEN_TTL_HOURS", default=24 * 7)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "minhos_site.api_auth.ExpiringTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # JSON nested too deep, or a field sent twice (JSON or form), is a 400 naming it (minhos_site/parsers.py).
    "DEFAULT_PARSER_CLASSES": ["minhos_site.parsers.JSONParser", "minhos_site.parsers.FormParser",
                               "minhos_site.parsers.MultiPartParser"],
    # limit 1-1000, offset 0-2^31-1: anything else is a 400 (minhos_site/pagination.py).
    "DEFAULT_PAGINATION_CLASS": "minhos_site.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_THROTTLE_CLASSES": ["minhos_site.api_auth.AnonRateThrottle", "minhos_site.api_auth.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": MINHOS_THROTTLE_RATES,
    # The client is REMOTE_ADDR as the server resolved it (MINHOS_TRUSTED_PROXIES): DRF would otherwise believe
    # any X-Forwarded-For, and a client could dodge its throttle by writing a new one on each request.
    "NUM_PROXIES": 0,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MinhOS API",
    "DESCRIPTION": "Instruments, market bars and (later) predictions, recommendations and monitoring.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No call-outs: Swagger UI would otherwise send the schema URL to an online validator.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    # A prediction's long and short outcomes share one set of values: one schema enum for both.
    "ENUM_NAME_OVERRIDES": {"PredictionOutcomeEnum": "mlcore.models.Prediction.Outcome"},
}

# MinhOS's own knobs.
MINHOS_FEED_STALE_SECONDS = env.float("MINHOS_FEED_STALE_SECONDS", default=10.0)
# The plausible range of bar times, from MINHOS_BAR_EARLIEST (ISO date or time, UTC unless it has an offset) to now
# plus MINHOS_BAR_MAX_AHEAD_SECONDS: a bar dated 9999 would put every later bar "before the last stored one".
MINHOS_BAR_EARLIEST = env.str("MINHOS_BAR_EARLIEST", default="1970-01-01")
MINHOS_BAR_MAX_AHEAD_SECONDS = env.float("MINHOS_BAR_MAX_AHEAD_SECONDS", default=86_400.0)
# The broker orders go to (a dotted path to a trading.brokers.Broker); the paper broker unless a live adapter is set.
MINHOS_BROKER = env.str("MINHOS_BROKER", default="trading.brokers.PaperBroker")
# Alert notices (opened, resolved) are posted as JSON to this URL (empty: off), signed with HMAC-SHA256 of the body
# under the secret (X-MinHOS-Signature: sha256=<hex>; no header without a secret), each try given TIMEOUT seconds.
MINHOS_ALERT_WEBHOOK_URL = env.str("MINHOS_ALERT_WEBHOOK_URL", default="")
MINHOS_ALERT_WEBHOOK_SECRET = env.str("MINHOS_ALERT_WEBHOOK_SECRET", default="")
MINHOS_ALERT_WEBHOOK_TIMEOUT = env.float("MINHOS_ALERT_WEBHOOK_TIMEOUT", default=5.0)


def _positive(variable: str, default: float, cast=float):
    text = env.str(variable, default=str(default))
    try:
        value = cast(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < float("inf"):
        kind = "a whole number" if cast is int else "a number"
        raise ImproperlyConfigured(f"{variable} must be {kind} > 0, not {text!r}")
    return value


# Monitoring (README: Monitoring): the rolling windows, the minimum counts before a verdict, the latency budget.
MINHOS_MONITOR_WINDOW_COUNT = _positive("MINHOS_MONITOR_WINDOW_COUNT", 500, int)
MINHOS_MONITOR_WINDOW_HOURS = _positive("MINHOS_MONITOR_WINDOW_HOURS", 24.0)
MINHOS_MONITOR_MIN_OUTCOMES = _positive("MINHOS_MONITOR_MIN_OUTCOMES", 50, int)
MINHOS_MONITOR_DRIFT_BARS = _positive("MINHOS_MONITOR_DRIFT_BARS", 1380, int)
MINHOS_MONITOR_DRIFT_MIN = _positive("MINHOS_MONITOR_DRIFT_MIN", 100, int)
MINHOS_MONITOR_LATENCY_BUDGET_MS = _positive("MINHOS_MONITOR_LATENCY_BUDGET_MS", 500.0)
MINHOS_MONITOR_WORKER_TIMEOUT = _positive("MINHOS_MONITOR_WORKER_TIMEOUT", 30.0)
# Retraining (README: Retraining): the preset of a market's first model when a retraining finds no champion to copy
# (otherwise the champion's settings are kept). The per-market windows and the policy are RetrainingPolicy rows.
MINHOS_RETRAIN_PRESET = env.str("MINHOS_RETRAIN_PRESET", default="full")
# A retraining's member fits run as separate tasks on the training queue (a chord), so training workers on several
# machines share one training; off, the retraining task fits them one after the other itself. Embedded mode has no
# workers: its fits run in-process either way.
MINHOS_TRAINING_DISTRIBUTED = env.bool("MINHOS_TRAINING_DISTRIBUTED", default=bool(REDIS_URL))
# A process that trains writes a heartbeat every MINHOS_TRAINING_HEARTBEAT_SECONDS; a retraining none of whose running
# parts beat for MINHOS_TRAINING_HEARTBEAT_TIMEOUT seconds lost its worker (killed mid-fit): the periodic retraining
# job (retraining-shadow-advance, on the monitoring queue) fails it with an alert and the market can retrain again.
MINHOS_TRAINING_HEARTBEAT_SECONDS = _positive("MINHOS_TRAINING_HEARTBEAT_SECONDS", 15.0)
MINHOS_TRAINING_HEARTBEAT_TIMEOUT = _positive("MINHOS_TRAINING_HEARTBEAT_TIMEOUT", 180.0)
if MINHOS_TRAINING_HEARTBEAT_TIMEOUT < 3 * MINHOS_TRAINING_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured(
        f"MINHOS_TRAINING_HEARTBEAT_TIMEOUT ({MINHOS_TRAINING_HEARTBEAT_TIMEOUT:g} s) must be at least 3 times "
        f"MINHOS_TRAINING_HEARTBEAT_SECONDS ({MINHOS_TRAINING_HEARTBEAT_SECONDS:g} s): a live training would be "
        "failed for a late beat")
if MINHOS_RETRAIN_PRESET not in ("fast", "full"):
    raise ImproperlyConfigured(f"MINHOS_RETRAIN_PRESET must be fast or full, not {MINHOS_RETRAIN_PRESET!r}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # django-axes says INFO at every start and login; its warnings (failures, lockouts) still show.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
