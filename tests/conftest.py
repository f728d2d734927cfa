"""Shared fixtures: personas (one user per role) and a real Celery worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from accounts.roles import Role

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _core_data(request):  # noqa: ANN001, ANN202
    """Put back what data migrations load (the core data dictionary, the role groups):
    a transactional test's flush empties every table, data migrations' rows included."""
    if request.node.get_closest_marker("django_db"):
        request.getfixturevalue("_django_db_helper")
    elif "transactional_db" in request.fixturenames or "live_server" in request.fixturenames:
        request.getfixturevalue("transactional_db")
    elif "db" in request.fixturenames:
        request.getfixturevalue("db")
    else:
        return
    from accounts.roles import roles_sync
    from crmhub.services import field_definitions_sync

    field_definitions_sync()
    roles_sync()


def make_user(django_user_model, username: str, role: str | None, **extra):  # noqa: ANN001, ANN003, ANN201
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user(username=username, password="pw-" + username, **extra)
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def admin_user(django_user_model):  # noqa: ANN001, ANN201
    return make_user(django_user_model, "alice_admin", Role.ADMIN, is_staff=True, is_superuser=True)


@pytest.fixture
def steward(django_user_model):  # noqa: ANN001, ANN201
    return make_user(django_user_model, "sam_steward", Role.STEWARD, is_staff=True)


@pytest.fixture
def sales(django_user_model):  # noqa: ANN001, ANN201
    return make_user(django_user_model, "sally_sales", Role.SALES)


@pytest.fixture
def support(django_user_model):  # noqa: ANN001, ANN201
    return make_user(django_user_model, "sue_support", Role.SUPPORT)


@pytest.fixture
def auditor(django_user_model):  # noqa: ANN001, ANN201
    return make_user(django_user_model, "otto_auditor", Role.AUDITOR)


@pytest.fixture
def outsider(django_user_model):  # noqa: ANN001, ANN201
    return make_user(django_user_model, "charlie_outsider", None)


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        CRMHUB_ENV="test",
        CRMHUB_USE_TEST_DATABASE="1",
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):  # noqa: ANN001, ANN201
    """A real Celery worker process on the test database and the configured broker.

    Tests that use it need ``@pytest.mark.django_db(transaction=True)``: the worker is
    another process and only sees committed data.
    """
    from crmhub.models import WorkerHeartbeat

    celery = [sys.executable, "-m", "celery", "-A", "crmhub"]
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    # Messages left by an earlier, interrupted run must not reach this run's worker.
    subprocess.run([*celery, "purge", "-f", "-Q", queue], env=_worker_env(), cwd=ROOT, capture_output=True, timeout=60)
    log_path = Path(settings.VAR_DIR) / "test-worker.log"
    log = open(log_path, "wb")  # noqa: SIM115 - kept open for the worker's lifetime
    hostname = f"test-worker-{os.getpid()}@%h"
    process = subprocess.Popen(
        [
            *celery,
            "worker",
            "-l",
            "info",
            "-Q",
            queue,
            "--concurrency",
            "2",
            "-n",
            hostname,
            "--without-mingle",
            "--without-gossip",
        ],
        env=_worker_env(),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    with django_db_blocker.unblock():
        while not WorkerHeartbeat.objects.filter(hostname__startswith=f"test-worker-{os.getpid()}@").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"the Celery worker did not start:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.3)
    process.log_path = log_path  # type: ignore[attr-defined]
    yield process
    process.terminate()  # a warm shutdown of the worker, which stops its own children
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log.close()


@pytest.fixture
def live_worker(celery_worker, transactional_db):  # noqa: ANN001, ANN201
    """The session's worker, once its heartbeat is back after the previous test's flush."""
    from crmhub.models import WorkerHeartbeat

    deadline = time.monotonic() + 30
    while not WorkerHeartbeat.objects.filter(hostname__startswith=f"test-worker-{os.getpid()}@").exists():
        if celery_worker.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the Celery worker stopped:\n{celery_worker.log_path.read_text()[-4000:]}")
        time.sleep(0.2)
    return celery_worker
