"""Settings: production refuses to start incomplete and passes check --deploy; DEBUG is off by default;
SQLite is tuned so that web, worker and beat can share one file."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from config.settings.base import tune_database

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ("SECRET_KEY", "FIELD_ENCRYPTION_KEY", "HASH_KEY", "DATABASE_URL", "CELERY_BROKER_URL")


def _env(**overrides) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED and k not in ("DEBUG", "DJANGO_SETTINGS_MODULE")}
    env.update(overrides)
    return env


def _prod_env(**overrides) -> dict:
    return _env(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY="prod-" + Fernet.generate_key().decode() + Fernet.generate_key().decode(),
        FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        HASH_KEY="h" * 32,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/payments",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
        **overrides,
    )


def _run(args, env):
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("missing", REQUIRED)
def test_production_refuses_to_start_without_each_required_setting(missing):
    env = _prod_env()
    env[missing] = ""
    result = _run(["manage.py", "check"], env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert missing in result.stderr
    # the secrets that were set are not echoed
    for name in ("SECRET_KEY", "FIELD_ENCRYPTION_KEY", "HASH_KEY"):
        if name != missing:
            assert env[name] not in result.stderr


def test_production_passes_check_deploy():
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], _prod_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(("module", "debug_env", "expected"), [
    ("config.settings.production", None, "False"),
    ("config.settings.local", None, "False"),
    ("config.settings.local", "true", "True"),
])
def test_debug_is_off_unless_set(module, debug_env, expected):
    env = _prod_env() if module.endswith("production") else _env(DJANGO_SETTINGS_MODULE=module)
    if debug_env is not None:
        env["DEBUG"] = debug_env
    code = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"
    result = _run(["-c", code], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_database_url_switches_to_postgresql_with_psycopg3():
    code = textwrap.dedent("""
        import django; django.setup()
        from django.conf import settings
        from django.db import connection
        db = settings.DATABASES["default"]
        print(db["ENGINE"], db["NAME"], connection.Database.__name__)
    """)
    result = _run(["-c", code], _env(DJANGO_SETTINGS_MODULE="config.settings.local",
                                      DATABASE_URL="postgres://postgres@127.0.0.1:5432/payments"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.postgresql", "payments", "psycopg"]


def test_sqlite_connections_use_wal_busy_timeout_and_immediate_transactions(tmp_path, django_db_blocker):
    from django.db.utils import ConnectionHandler

    handler = ConnectionHandler({"default": tune_database({"ENGINE": "django.db.backends.sqlite3",
                                                          "NAME": str(tmp_path / "probe.sqlite3")})})
    conn = handler["default"]
    try:
        with django_db_blocker.unblock(), conn.cursor() as cursor:
            assert cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert cursor.execute("PRAGMA busy_timeout").fetchone()[0] == 20000
        assert conn.transaction_mode == "IMMEDIATE"
    finally:
        conn.close()


WRITER = textwrap.dedent("""
    import sys
    import django
    django.setup()
    from django.db import connection, transaction
    assert connection.vendor == "sqlite" and connection.settings_dict["NAME"] == sys.argv[1]
    conn = connection
    for i in range(int(sys.argv[2])):
        # read-then-write: under DEFERRED transactions in WAL mode this upgrade fails at once with
        # "database is locked" when another process committed meanwhile; IMMEDIATE waits its turn.
        with transaction.atomic():
            with conn.cursor() as cursor:
                n = cursor.execute("SELECT COALESCE(MAX(n), 0) FROM counter").fetchone()[0]
                cursor.execute("INSERT INTO counter (n) VALUES (%s)", [n + 1])
    conn.close()
""")


def test_sqlite_is_shared_by_concurrent_writer_processes(tmp_path):
    """Four processes doing read-then-write transactions on one file: none fails, none loses a write."""
    import sqlite3

    path = tmp_path / "shared.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE counter (n INTEGER NOT NULL UNIQUE)")
    # The project's own settings, pointed at the file through DATABASE_URL.
    env = _env(DJANGO_SETTINGS_MODULE="config.settings.local", DATABASE_URL=f"sqlite:///{path}")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), "40"], cwd=ROOT, env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    with sqlite3.connect(path) as db:
        count, top = db.execute("SELECT COUNT(*), MAX(n) FROM counter").fetchone()
    assert (count, top) == (160, 160)
