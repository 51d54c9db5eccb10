"""`fitlens server`: a shared MLflow tracking server for a team, on PostgreSQL with proxied artifacts.

The embedded store (one SQLite file) serves one machine; a team, or trials on several Ray nodes, log to one
`mlflow server` instead. This module only checks the settings and hands over to `mlflow server`: every bad
input is refused with a ConfigError before anything starts, the database is created if it is missing (MLflow
creates its tables but not the database), and MLflow's security middleware (allowed Host headers, CORS) is
always on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from lightning_modules.config import ConfigError

BACKEND_ENV = "FITLENS_BACKEND_URI"
ARTIFACTS_ENV = "FITLENS_ARTIFACTS_DESTINATION"
DEFAULT_BACKEND_URI = "postgresql://postgres@127.0.0.1:5432/fitlens"
DEFAULT_ARTIFACTS = "mlartifacts-server"  # beside, not inside, the embedded store's ./mlartifacts
DEFAULT_HOST = "127.0.0.1"  # this machine only: exposing the server is a decision, not a default
DEFAULT_PORT = 5000  # MLflow's own
POSTGRES_DRIVERS = ("postgresql", "postgresql+psycopg2")  # psycopg2 is the driver fitlens installs
CONNECT_TIMEOUT_S = 5
# What fitlens sets itself (the same option among the extra mlflow options would contradict it), and why.
OWN_OPTIONS = {
    "--backend-store-uri": f"fitlens sets it from {BACKEND_ENV}",
    "--artifacts-destination": f"fitlens sets it from {ARTIFACTS_ENV}",
    "--serve-artifacts": "fitlens always proxies artifacts", "--no-serve-artifacts": "fitlens always proxies artifacts",
    "--artifacts-only": "fitlens server is a tracking server",
    "--host": "use fitlens' own --host", "-h": "use fitlens' own --host",
    "--port": "use fitlens' own --port", "-p": "use fitlens' own --port",
    "--allowed-hosts": "use fitlens' own --allowed-hosts",
}
NEVER = "--disable-security-middleware"


@dataclass(frozen=True)
class ServerSettings:
    """What `mlflow server` is started with, checked."""

    backend_uri: str
    artifacts_destination: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    allowed_hosts: str | None = None  # None: MLflow's default, localhost and private addresses
    mlflow_args: tuple[str, ...] = ()


def server_settings(
    host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, allowed_hosts: str | None = None,
    mlflow_args: Sequence[str] = (), environ: Mapping[str, str] = os.environ,
) -> ServerSettings:
    """The settings from the command line and FITLENS_BACKEND_URI / FITLENS_ARTIFACTS_DESTINATION; a
    ConfigError names the first bad field. Pure: the database is not contacted here (see `ensure_database`)."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port = {port} is not allowed; it must be a TCP port in 1..65535 "
                          f"(default: {DEFAULT_PORT})")
    if not host.strip():
        raise ConfigError(f"--host = {host!r} is not allowed; give an address to bind, e.g. {DEFAULT_HOST} "
                          "(this machine only, the default) or 0.0.0.0 (every interface)")
    if allowed_hosts is not None and not allowed_hosts.strip():
        raise ConfigError(f"--allowed-hosts = {allowed_hosts!r} is not allowed; give a comma-separated list of "
                          "Host headers, e.g. mlflow.example.com,10.0.0.5:5000, or leave it out for MLflow's "
                          "default (localhost and private addresses)")
    backend_uri = environ.get(BACKEND_ENV) or DEFAULT_BACKEND_URI
    _postgres_url(backend_uri)
    return ServerSettings(backend_uri, artifacts_destination(environ.get(ARTIFACTS_ENV)), host, port,
                          allowed_hosts, _check_mlflow_args(mlflow_args))


def artifacts_destination(value: str | None) -> str:
    """A URI (s3://bucket/path, file:///...) as given; a local folder made absolute, since the server resolves
    a relative one against whatever directory it runs in."""
    value = value or DEFAULT_ARTIFACTS
    if "://" in value:
        return value
    return str(Path(value).expanduser().resolve())


def _check_mlflow_args(args: Sequence[str]) -> tuple[str, ...]:
    for i, arg in enumerate(args):
        option, _, value = arg.partition("=")
        value = value or (args[i + 1] if i + 1 < len(args) else "")
        if option == "--app-name" and value == "basic-auth" and not _has_module("flask_wtf"):
            raise ConfigError("mlflow option --app-name basic-auth needs MLflow's auth extra, which is not "
                              "installed; install it with .venv/bin/pip install 'mlflow[auth]==3.17.2'")
        if option == NEVER:
            raise ConfigError(f"mlflow option {NEVER} is not allowed: fitlens server always keeps MLflow's "
                              "security middleware on; widen it with --allowed-hosts (Host headers) or "
                              "-- --cors-allowed-origins ORIGINS instead")
        if option in OWN_OPTIONS:
            raise ConfigError(f"mlflow option {option} is not allowed after --: {OWN_OPTIONS[option]}")
    return tuple(args)


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _postgres_url(uri: str) -> Any:
    """`uri` parsed as a SQLAlchemy URL of a PostgreSQL database; a ConfigError naming FITLENS_BACKEND_URI
    otherwise."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    allowed = (f"a PostgreSQL URI postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE "
               f"(default: {DEFAULT_BACKEND_URI})")
    try:
        url = make_url(uri)
    except ArgumentError:
        raise ConfigError(f"{BACKEND_ENV} = {uri!r} is not allowed; it must be {allowed}") from None
    shown = url.render_as_string(hide_password=True)
    if url.drivername not in POSTGRES_DRIVERS:
        raise ConfigError(f"{BACKEND_ENV} = {shown!r} is not allowed: fitlens server keeps runs in PostgreSQL "
                          f"(the scheme must be {' or '.join(POSTGRES_DRIVERS)}, not {url.drivername}); "
                          f"it must be {allowed}")
    if not url.database:
        raise ConfigError(f"{BACKEND_ENV} = {shown!r} names no database; it must be {allowed}")
    return url


def ensure_database(uri: str) -> bool:
    """Connect to the database of `uri`, creating it first when the server answers but the database is
    missing; returns True when it was created. A ConfigError says why PostgreSQL cannot be used."""
    import psycopg2
    from psycopg2 import sql

    url = _postgres_url(uri)
    shown = url.render_as_string(hide_password=True)
    try:
        _connect(url).close()
        return False
    except psycopg2.OperationalError as err:
        first_error = " ".join(str(err).split())
    try:
        # The maintenance database every cluster has: from there a missing database can be created.
        admin = _connect(url.set(database="postgres"))
    except psycopg2.OperationalError:
        raise ConfigError(f"{BACKEND_ENV} = {shown!r}: cannot connect to PostgreSQL ({first_error}); it "
                          "must name a running PostgreSQL server this user may log in to (is it running? "
                          "`pg_isready -h HOST -p PORT` tells)") from None
    admin.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,))
            if cur.fetchone() is not None:  # it exists, so the first error was about access
                raise ConfigError(f"{BACKEND_ENV} = {shown!r}: cannot connect to database {url.database!r} "
                                  f"({first_error}); the user needs the CONNECT privilege on it")
            try:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(url.database)))
            except psycopg2.errors.DuplicateDatabase:
                return False  # another `fitlens server` created it a moment ago
            except psycopg2.Error as err:
                raise ConfigError(f"{BACKEND_ENV} = {shown!r}: database {url.database!r} is missing and cannot "
                                  f"be created ({' '.join(str(err).split())}); create it, or give a user with "
                                  "the CREATEDB privilege") from None
    finally:
        admin.close()
    return True


def _connect(url: Any) -> Any:
    """A psycopg2 connection with exactly the arguments SQLAlchemy (and so MLflow) derives from `url`."""
    import psycopg2
    from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2

    url = url.set(drivername="postgresql+psycopg2")
    cargs, cparams = PGDialect_psycopg2().create_connect_args(url)
    return psycopg2.connect(*cargs, **{"connect_timeout": CONNECT_TIMEOUT_S, **cparams})


def psycopg2_uri(uri: str) -> str:
    """`uri` with psycopg2 named as its driver: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg (version
    3), which fitlens does not install."""
    return _postgres_url(uri).set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def mlflow_command(settings: ServerSettings) -> list[str]:
    """The `mlflow server` command line for `settings`, run by this interpreter (the venv's MLflow). The backend
    URI is not on it: it may hold a password, and a command line is visible to every user of the machine."""
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--serve-artifacts", "--artifacts-destination", settings.artifacts_destination,
        "--host", settings.host, "--port", str(settings.port),
    ]
    if settings.allowed_hosts is not None:
        command += ["--allowed-hosts", settings.allowed_hosts]
    return command + list(settings.mlflow_args)


def mlflow_environment(settings: ServerSettings, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment `mlflow server` runs in: the backend URI (read by its --backend-store-uri option) and
    the switches fitlens decides."""
    env = dict(environ)
    env["MLFLOW_BACKEND_STORE_URI"] = psycopg2_uri(settings.backend_uri)
    env.pop("MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE", None)  # the middleware stays on, whatever the shell says
    # MLflow's job runner (GenAI evaluation jobs, trace roll-ups) starts a dozen consumer processes that fitlens
    # never uses and that outlive a stopped server for a while; MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true brings it.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return env


def serve(settings: ServerSettings) -> NoReturn:
    """Create the database if missing, then become `mlflow server` (exec, so no process sits between the caller
    and MLflow: SIGTERM and SIGINT reach MLflow, which forwards them to its uvicorn workers and stops cleanly)."""
    created = ensure_database(settings.backend_uri)
    shown = _postgres_url(settings.backend_uri).render_as_string(hide_password=True)
    print(f"fitlens: MLflow tracking server on http://{settings.host}:{settings.port}; runs in {shown}"
          f"{' (created)' if created else ''}, artifacts in {settings.artifacts_destination}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    command = mlflow_command(settings)
    os.execve(command[0], command, mlflow_environment(settings))
