"""deploy/ for the worker, and every Kubernetes manifest of the project checked against the
Kubernetes schemas by a real validator (kubernetes-validate --strict, offline, pinned in the dev
extra), not only parsed; the worker's image, compose service and manifests agree with each other,
with deploy/README.md and with the settings the worker reads."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pseudoword.runtime.worker import settings as worker_settings
from tests.conftest import ROOT
from tests.integration.test_deploy_manifests import markdown_table

DEPLOY = ROOT / "deploy"
WORKER_K8S = DEPLOY / "k8s" / "worker"
PORT = 8100


def manifest_files() -> list[Path]:
    return sorted(p for p in (DEPLOY / "k8s").rglob("*.yaml") if p.name != "kustomization.yaml")


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", *map(str, paths)],
                          capture_output=True, text=True, timeout=300)


def test_every_manifest_passes_the_kubernetes_schemas_strictly() -> None:
    files = manifest_files()
    assert len(files) >= 11 and DEPLOY / "k8s" / "deployment.yaml" in files and WORKER_K8S / "deployment.yaml" in files
    done = validate(*files)
    assert done.returncode == 0, done.stdout + done.stderr
    passed = re.findall(r"passed for resource (\S+)", done.stdout + done.stderr)
    assert len(passed) == len(files), done.stdout + done.stderr


def test_the_validator_refuses_what_kubernetes_would(tmp_path: Path) -> None:
    deployment = yaml.safe_load((WORKER_K8S / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")  # a typo: an unknown field
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(deployment))
    container["readinessProbe"] = container.pop("readinesProbe")
    container["ports"][0]["containerPort"] = "8100"  # a string where an integer belongs
    wrong_type = tmp_path / "wrong-type.yaml"
    wrong_type.write_text(yaml.safe_dump(deployment))
    for path in (typo, wrong_type):
        done = validate(path)
        assert done.returncode != 0, path.name


@pytest.fixture(scope="module")
def worker_objects() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((WORKER_K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in WORKER_K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kustomization["resources"]) == on_disk
    return {doc["kind"]: doc for name in [*kustomization["resources"], "secret.example.yaml"]
            for doc in yaml.safe_load_all((WORKER_K8S / name).read_text()) if doc}


def test_worker_manifests_are_wired_together(worker_objects: dict[str, dict[str, Any]]) -> None:
    deployment, service = worker_objects["Deployment"], worker_objects["Service"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    assert args[:2] == ["pseudoword", "worker"] and args[args.index("--port") + 1] == str(PORT)
    assert container["ports"] == [{"name": "http", "containerPort": PORT}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    registry_labels = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())["spec"]["selector"]
    assert registry_labels["matchLabels"] != deployment["spec"]["selector"]["matchLabels"]  # no overlap
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    config = worker_objects["ConfigMap"]["data"]
    grace = int(config["PSEUDOWORD_WORKER_SHUTDOWN_GRACE"])
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > grace + pre_stop
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True and config["PSEUDOWORD_WORKER_DATA_DIR"] in mounts
    assert config["PSEUDOWORD_CACHE"] in mounts
    keys_file = next(e["value"] for e in container["env"] if e["name"] == "PSEUDOWORD_WORKER_API_KEYS_FILE")
    assert Path(keys_file).parent.as_posix() in mounts
    assert "api-keys" in worker_objects["Secret"]["stringData"]
    assert "nvidia.com/gpu" in (WORKER_K8S / "deployment.yaml").read_text()  # the GPU variant, documented


def test_worker_image_installs_the_worker_extra_and_runs_it_unprivileged() -> None:
    dockerfile = (DEPLOY / "Dockerfile.worker").read_text()
    assert '".[worker]"' in dockerfile
    assert re.search(r"^USER 10001:10001$", dockerfile, re.M)
    assert re.search(rf"^EXPOSE {PORT}$", dockerfile, re.M)
    assert re.search(rf'^CMD \["pseudoword", "worker", .*"--port", "{PORT}"\]$', dockerfile, re.M)
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+$", dockerfile, re.M)
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in dockerfile and "cu126" in dockerfile
    assert f"http://127.0.0.1:{PORT}/healthz" in dockerfile
    ignore = (DEPLOY / "Dockerfile.worker.dockerignore").read_text()
    assert ignore.splitlines()[2] == "*" and "!runtime/" in ignore
    pyproject = (ROOT / "pyproject.toml").read_text()
    extra = re.search(r"^worker = \[(.*?)^\]", pyproject, re.M | re.S)
    assert extra and "litestar" in extra[1] and "sqlmodel" not in extra[1].lower()


def test_compose_worker_service(readme: str) -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.worker.yml").read_text())
    registry_stack = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    worker = compose["services"]["worker"]
    assert worker["build"]["dockerfile"] == "deploy/Dockerfile.worker"
    command = worker["command"]
    assert command[command.index("--port") + 1] == str(PORT)
    registry_url = command[command.index("--registry") + 1]
    lb_port = registry_stack["services"]["lb"]["ports"][0].rsplit(":", 1)[1]
    assert registry_url == f"http://lb:{lb_port}" and "lb" in worker["depends_on"]
    assert worker["environment"]["PSEUDOWORD_WORKER_API_KEYS_FILE"] == "/run/secrets/worker_api_keys"
    assert compose["secrets"]["worker_api_keys"]["file"] == "./secrets/worker_api_keys"
    assert worker["read_only"] is True and any(v.endswith(":/models:ro") for v in worker["volumes"])
    assert f"http://127.0.0.1:{PORT}/readyz" in " ".join(worker["healthcheck"]["test"])
    text = (DEPLOY / "docker-compose.worker.yml").read_text()
    used = dict(re.findall(r"\$\{(\w+):-([^}]*)\}", text))
    documented = {row["worker variable"]: row["default"] for row in markdown_table(readme, "worker variable")}
    assert used == documented


@pytest.fixture(scope="module")
def readme() -> str:
    return (DEPLOY / "README.md").read_text()


def test_every_worker_setting_is_documented_and_read(readme: str,
                                                     worker_objects: dict[str, dict[str, Any]]) -> None:
    documented = {row["worker setting"] for row in markdown_table(readme, "worker setting")}
    read = set(re.findall(r'"(PSEUDOWORD_WORKER_[A-Z0-9_]+)"', inspect.getsource(worker_settings)))
    # Every setting also has a _FILE form (core/env.py reads it): the README names the one used for keys.
    assert read == {name.removesuffix("_FILE") for name in documented if name.startswith("PSEUDOWORD_WORKER_")}
    assert set(worker_objects["ConfigMap"]["data"]) <= documented
    compose = yaml.safe_load((DEPLOY / "docker-compose.worker.yml").read_text())
    assert set(compose["services"]["worker"]["environment"]) <= documented
