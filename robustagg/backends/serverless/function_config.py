"""The worker function's own configuration: its environment variables, set when it is deployed.

Where the store is and how a worker authenticates to it come from here, never from an
invocation event (an event that could name a host and a credential would let anyone allowed to
invoke the function send the function's secrets anywhere):

``RA_STORE``
    JSON of the store's settings without credentials: ``{"kind": "redis", "host", "port",
    "db", "ssl", "socket_timeout", "auth"}`` or ``{"kind": "s3", "bucket", "prefix",
    "endpoint_url", "region"}``. Redis ``auth``: ``"round"`` (each invocation logs in as the
    per-round user the server created for its worker, with a password derived from the token
    in its event; see :mod:`.stores.redis_acl`) or ``"function"`` (the standing worker user
    below).
``RA_REDIS_USERNAME``, ``RA_REDIS_PASSWORD``
    The standing worker user of ``auth="function"`` (on AWS resolved from Secrets Manager by
    the template). S3 credentials are the function's role, through boto3's chain.
"""
from __future__ import annotations

import json

from .stores.redis_acl import round_password, round_user
from .stores.redis_store import resolve_secret

STORE_ENV = "RA_STORE"
USERNAME_ENV = "RA_REDIS_USERNAME"
PASSWORD_ENV = "RA_REDIS_PASSWORD"
AUTH_MODES = ("round", "function")
_SETTINGS = {"redis": {"kind", "host", "port", "db", "ssl", "socket_timeout", "auth"},
             "s3": {"kind", "bucket", "prefix", "endpoint_url", "region", "max_workers"},
             "memory": {"kind"}}
_CREDENTIALS = ("username", "password", "password_env", "profile")


class ConfigError(ValueError):
    """The function's configuration (its environment) is missing or malformed."""


def check_store_settings(settings: dict) -> dict:
    """Return ``settings`` if they are a valid credential-free ``RA_STORE``, else raise ConfigError."""
    if not isinstance(settings, dict):
        raise ConfigError(f"{STORE_ENV} must be a JSON object, got {type(settings).__name__}")
    kind = settings.get("kind")
    if kind not in _SETTINGS:
        raise ConfigError(f"{STORE_ENV}: kind must be one of {sorted(_SETTINGS)}, got {kind!r}")
    secret = [k for k in _CREDENTIALS if k in settings]
    if secret:
        raise ConfigError(f"{STORE_ENV} holds {secret}: credentials go in {USERNAME_ENV} and "
                          f"{PASSWORD_ENV} (or the function's role for S3)")
    unknown = set(settings) - _SETTINGS[kind]
    if unknown:
        raise ConfigError(f"{STORE_ENV}: unknown settings {sorted(unknown)} for the {kind} store; "
                          f"known: {sorted(_SETTINGS[kind])}")
    if settings.get("auth", "function") not in AUTH_MODES:
        raise ConfigError(f"{STORE_ENV}: auth must be one of {list(AUTH_MODES)}, "
                          f"got {settings['auth']!r}")
    return settings


def store_settings(environ) -> dict:
    """The checked ``RA_STORE`` of ``environ`` (a mapping such as ``os.environ``)."""
    raw = environ.get(STORE_ENV)
    if not raw:
        raise ConfigError(f"the function's environment has no {STORE_ENV} (the store's settings, "
                          f"JSON): set it in the function's configuration")
    try:
        settings = json.loads(raw)
    except ValueError as e:
        raise ConfigError(f"{STORE_ENV} is not JSON: {e}") from None
    return check_store_settings(settings)


def worker_store_config(settings: dict, environ, run_id: str, worker: int,
                        token: bytes) -> dict:
    """The store configuration one invocation opens (for :func:`.stores.make_store`):
    ``settings`` plus the credentials its auth mode gives."""
    cfg = {k: v for k, v in settings.items() if k != "auth"}
    if settings["kind"] != "redis":
        return cfg
    if settings.get("auth", "function") == "round":
        return {**cfg, "username": round_user(run_id, worker), "password": round_password(token)}
    return {**cfg, "username": environ.get(USERNAME_ENV), "password": environ.get(PASSWORD_ENV)}


def function_environment(store: dict, auth: str) -> dict:
    """The environment that configures a function for ``store`` (the store as the functions
    reach it, credentials inline or as ``password_env``): ``RA_STORE`` and, with
    ``auth="function"``, the worker user's name and password."""
    store = dict(store)
    username, password = store.pop("username", None), store.pop("password", None)
    password = resolve_secret(password, store.pop("password_env", None), "password")
    store.pop("profile", None)
    env = {}
    if store.get("kind") == "redis":
        store["auth"] = auth
        if auth == "function" and password is not None:
            env[PASSWORD_ENV] = password
            if username is not None:
                env[USERNAME_ENV] = username
    env[STORE_ENV] = json.dumps(check_store_settings(store), sort_keys=True)
    return env
