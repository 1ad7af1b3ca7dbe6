"""The repository's shape: packaging under `kith`, the compose file's wiring, the CLI's help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from kith.platform.config import VARIABLES

REPO = Path(__file__).resolve().parents[1]
KITH = Path(sys.executable).with_name("kith")


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the "KEY=value" list form
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _command(service: dict) -> str:
    command = service["command"]
    return " ".join(command) if isinstance(command, list) else str(command)


def _dockerfile(build: str | dict) -> Path:
    if isinstance(build, str):  # the short form names the context; the Dockerfile sits in it
        return Path(build) / "Dockerfile"
    return Path(build.get("context", ".")) / build.get("dockerfile", "Dockerfile")


def test_compose_declares_the_production_services() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "web", "worker"} <= services.keys()
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")


@pytest.mark.parametrize("name", ["web", "worker"])
def test_web_and_worker_share_the_kith_image_and_wiring(name: str) -> None:
    services = _compose()["services"]
    service = services[name]
    build = service.get("build")
    if build is not None:
        assert _dockerfile(build) == Path("infra/Dockerfile")
    else:
        # no build of its own: it must reuse the image another service builds from infra/Dockerfile
        builders = [s for s in services.values() if s.get("build") and s.get("image") == service["image"]]
        assert builders, f"{name} neither builds infra/Dockerfile nor shares that image"
    env = _environment(service)
    assert urlparse(env["DATABASE_URL"]).hostname == "postgres"
    assert urlparse(env["REDIS_URL"]).hostname == "redis"
    unknown = set(env) - set(VARIABLES)
    assert not unknown, f"{name} sets variables Kith does not read: {sorted(unknown)}"
    depends = service["depends_on"]
    assert {"postgres", "redis"} <= set(depends)


def test_migrations_run_once_before_web_and_worker() -> None:
    services = _compose()["services"]
    assert _command(services["migrate"]).split()[:2] == ["kith", "migrate"]
    assert _command(services["web"]).split()[:2] == ["kith", "serve"]
    assert _command(services["worker"]).split()[:2] == ["kith", "worker"]
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_stdlib_platform_is_not_shadowed_from_the_repo_root() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import uuid, platform; platform.system(); uuid.uuid4()"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("folder", ["platform", "tenants", "jobs", "web"])
def test_top_level_folders_are_not_packages(folder: str) -> None:
    assert not (REPO / folder / "__init__.py").exists(), f"{folder}/__init__.py breaks the kith.* mapping"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["dev"],
        ["serve"],
        ["worker"],
        ["migrate"],
        ["tenants"],
        ["tenants", "create"],
        ["tenants", "list"],
        ["tokens"],
        ["tokens", "create"],
        ["bench"],
        ["crm-bench"],
        ["crm-bench", "measure"],
        ["backups"],
        ["backups", "create"],
        ["backups", "restore"],
    ],
    ids=lambda args: " ".join(args) or "kith",
)
def test_every_command_explains_itself(args: list[str]) -> None:
    result = subprocess.run(
        [str(KITH), *args, "--help"], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout.lower()
