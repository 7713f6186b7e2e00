"""docker-compose.yml and the Dockerfile: the production stack as the README promises it."""

from __future__ import annotations

import re
import shlex
import tomllib
from typing import Any

import pytest
import yaml

from models.orders import SearchAttr
from settings import PROJECT_DIR

SERVICES = {"postgresql", "temporal", "temporal-setup", "temporal-ui", "worker", "api",
            "migrate", "mailpit"}


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((PROJECT_DIR / "docker-compose.yml").read_text(encoding="utf-8"))
    return dict(compose["services"])


def command_of(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return command if isinstance(command, str) else " ".join(command)


def test_every_service_of_the_stack_is_there(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= SERVICES


def test_every_service_the_readme_names_is_there(services: dict[str, dict[str, Any]]) -> None:
    readme = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")
    section = readme.split("**Production stack**", 1)[1].split("\n- **", 1)[0]
    named = set(re.findall(r"^\s*\| `([a-z-]+)` \|", section, re.M))
    assert named >= SERVICES, named
    assert named <= set(services), named - set(services)


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if "image" not in service:
            continue
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert "$" not in image, f"{name}: {image} depends on the environment"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: {image} not pinned"
    expected = {"postgresql": "postgres:16.", "temporal": "temporalio/auto-setup:1.",
                "temporal-setup": "temporalio/admin-tools:1.", "temporal-ui": "temporalio/ui:",
                "mailpit": "axllent/mailpit:"}
    for name, prefix in expected.items():
        assert services[name]["image"].startswith(prefix), services[name]["image"]


def test_temporal_runs_on_postgresql(services: dict[str, dict[str, Any]]) -> None:
    env = services["temporal"]["environment"]
    assert env["DB"].startswith("postgres") and env["POSTGRES_SEEDS"] == "postgresql"
    assert "8233:8080" in services["temporal-ui"]["ports"]


def test_worker_and_api_run_the_orders_command(services: dict[str, dict[str, Any]]) -> None:
    assert command_of(services["worker"]) == "orders worker"
    assert command_of(services["api"]) == "orders api"
    assert command_of(services["migrate"]) == "alembic upgrade head"
    for name in ("worker", "api", "migrate"):
        assert services[name]["build"] == "."
        env = services[name]["environment"]
        assert {"ORDERS_DATABASE_URL", "ORDERS_TEMPORAL_ADDRESS", "ORDERS_SMTP_HOST",
                "ORDERS_SMTP_PORT"} <= set(env), name
        assert env["ORDERS_TEMPORAL_ADDRESS"] == "temporal:7233"
        assert "@postgresql:5432/" in env["ORDERS_DATABASE_URL"]
    assert any(str(p).endswith(":8000") for p in services["api"]["ports"])
    pyproject = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    assert "orders" in pyproject["project"]["scripts"]


def test_setup_registers_every_search_attribute(services: dict[str, dict[str, Any]]) -> None:
    script = command_of(services["temporal-setup"])
    assert "temporal operator search-attribute create" in script
    registered = dict(re.findall(r"^\s*register (\w+) (\w+)\s*$", script, re.MULTILINE))
    assert registered == SearchAttr.TYPES
    # Compose interpolates "$x" itself: shell variables must be written "$$x".
    assert not re.search(r"(?<!\$)\$(?!\$)", script.replace("$$", "")), script


def test_dockerfile_builds_the_package_with_weasyprint_libraries() -> None:
    dockerfile = (PROJECT_DIR / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert "libpango-1.0-0" in dockerfile and "libpangoft2-1.0-0" in dockerfile
    assert re.search(r"^RUN pip install \.$", dockerfile, re.MULTILINE)
    copied = {part.rstrip("/") for line in dockerfile.splitlines() if line.startswith("COPY ")
              for part in shlex.split(line)[1:-1]}
    needed = {"pyproject.toml", "README.md", "alembic.ini", "settings.py", "worker.py",
              "activities", "models", "starter", "workflows", "migrations", "templates"}
    assert needed <= copied, needed - copied
