"""deploy/: the compose file, the Kubernetes manifests, the Dockerfile and nginx.conf parse, are
wired together, and agree with the tables of deploy/README.md and with the server's own settings,
so documentation and files cannot drift apart. No containers are needed: everything is read.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SECRET_TEMPLATE = "secret.example.yaml"


# --- reading ------------------------------------------------------------------------------------

def markdown_table(text: str, first_header: str) -> list[dict[str, str]]:
    """Rows of the Markdown table whose header row starts with ``first_header``; backticks dropped."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        cells = _cells(line)
        if cells and cells[0] == first_header:
            header = cells
            rows = []
            for row_line in lines[index + 2:]:
                if not row_line.startswith("|"):
                    break
                rows.append(dict(zip(header, (cell.replace("`", "") for cell in _cells(row_line)))))
            assert rows, f"the table starting with {first_header!r} in deploy/README.md is empty"
            return rows
    raise AssertionError(f"deploy/README.md has no table starting with | {first_header} |")


def _cells(line: str) -> list[str]:
    line = line.strip()
    if not line.startswith("|"):
        return []
    return [cell.strip() for cell in line.strip("|").split("|")]


@pytest.fixture(scope="module")
def readme() -> str:
    return (DEPLOY / "README.md").read_text()


@pytest.fixture(scope="module")
def glance(readme: str) -> dict[str, str]:
    return {row["key"]: row["value"] for row in markdown_table(readme, "key")}


@pytest.fixture(scope="module")
def settings_table(readme: str) -> dict[str, dict[str, str]]:
    return {row["setting"]: row for row in markdown_table(readme, "setting")}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@pytest.fixture(scope="module")
def manifests(kustomization: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every Kubernetes object, applied by kustomize or the Secret template, keyed by (kind, name)."""
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for filename in [*kustomization["resources"], SECRET_TEMPLATE]:
        for doc in yaml.safe_load_all((K8S / filename).read_text()):
            if doc is None:
                continue
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"{key} defined twice"
            doc["_file"] = f"k8s/{filename}"
            objects[key] = doc
    return objects


def of_kind(manifests: dict[tuple[str, str], dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for (k, _), doc in manifests.items() if k == kind]


@pytest.fixture(scope="module")
def deployment(manifests: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    [deployment] = of_kind(manifests, "Deployment")
    return deployment


@pytest.fixture(scope="module")
def api_container(deployment: dict[str, Any]) -> dict[str, Any]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def nginx() -> str:
    return (DEPLOY / "nginx.conf").read_text()


def seconds(value: str | int) -> int:
    """``30``, ``"30s"``, ``"30 s"`` or ``"1m"`` as seconds."""
    match = re.fullmatch(r"(\d+)\s*(s|m)?", str(value).strip())
    assert match, f"not a duration: {value!r}"
    return int(match[1]) * (60 if match[2] == "m" else 1)


def env_names(container: dict[str, Any]) -> set[str]:
    return {item["name"] for item in container.get("env", [])}


# --- everything parses and is complete ----------------------------------------------------------

def test_compose_file_and_manifests_parse(compose: dict[str, Any], kustomization: dict[str, Any],
                                          manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert compose["services"], "docker-compose.yml has no services"
    for name, service in compose["services"].items():
        assert "image" in service, f"compose service {name} names no image"
    # Every manifest file is applied by kustomize, except the Secret template (filled in by hand).
    on_disk = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == {*kustomization["resources"], SECRET_TEMPLATE}
    for (kind, name), doc in manifests.items():
        assert doc["apiVersion"] and kind and name


def test_compose_services_are_the_ones_the_readme_lists(readme: str, compose: dict[str, Any]) -> None:
    documented = {row["service"]: row["image"] for row in markdown_table(readme, "service")}
    assert set(documented) == set(compose["services"])
    for name, image in documented.items():
        actual = compose["services"][name]["image"]
        default = re.fullmatch(r"\$\{\w+:-(.+)\}", actual)  # ${PSEUDOWORD_IMAGE:-pseudoword:0.1.0}
        assert image == (default[1] if default else actual), f"README and compose disagree on {name}'s image"


def test_every_image_is_pinned(compose: dict[str, Any], dockerfile: str, kustomization: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = re.sub(r"\$\{\w+:-(.+)\}", r"\1", service["image"])
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base[1]), "the base image must be pinned"
    [image] = kustomization["images"]
    assert image["newTag"] not in ("", "latest")


# --- replicas, ports, probes, shutdown: README "At a glance" against every file -----------------

def test_replicas(glance: dict[str, str], compose: dict[str, Any], deployment: dict[str, Any]) -> None:
    replicas = int(glance["API replicas"])
    assert replicas >= 2
    assert compose["services"]["api"]["deploy"]["replicas"] == replicas
    assert deployment["spec"]["replicas"] == replicas
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_probes(glance: dict[str, str], compose: dict[str, Any], api_container: dict[str, Any],
                dockerfile: str) -> None:
    readiness, liveness = glance["readiness probe"], glance["liveness probe"]
    assert (readiness, liveness) == ("/readyz", "/healthz")  # the paths the server serves
    assert api_container["readinessProbe"]["httpGet"]["path"] == readiness
    assert api_container["livenessProbe"]["httpGet"]["path"] == liveness
    assert api_container["startupProbe"]["httpGet"]["path"] == liveness
    port_names = {port["name"] for port in api_container["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert api_container[probe]["httpGet"]["port"] in port_names
    # compose gates the load balancer on readiness; the image's own HEALTHCHECK is liveness.
    port = glance["API port"]
    assert f"http://127.0.0.1:{port}{readiness}" in " ".join(compose["services"]["api"]["healthcheck"]["test"])
    healthcheck = re.search(r"^HEALTHCHECK .*\n(?:\s+.*\n)*", dockerfile, re.M)
    assert healthcheck and f"http://127.0.0.1:{port}{liveness}" in healthcheck[0]


def test_ports(glance: dict[str, str], compose: dict[str, Any], api_container: dict[str, Any],
               manifests: dict[tuple[str, str], dict[str, Any]], dockerfile: str, nginx: str) -> None:
    port = int(glance["API port"])
    command = compose["services"]["api"]["command"]
    assert command[command.index("--port") + 1] == str(port)
    assert api_container["args"][api_container["args"].index("--port") + 1] == str(port)
    [http] = api_container["ports"]
    assert http["containerPort"] == port
    assert re.search(rf"^EXPOSE {port}$", dockerfile, re.M)
    assert re.search(rf'^CMD \[.*"--port", "{port}"\]$', dockerfile, re.M)
    assert re.search(rf"^\s*server api:{port} resolve\b", nginx, re.M), "nginx must balance over the api service"
    [service] = of_kind(manifests, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == http["name"]
    lb_port = int(glance["load balancer port"])
    assert re.search(rf"^\s*listen {lb_port};", nginx, re.M)
    [mapping] = compose["services"]["lb"]["ports"]
    assert mapping.endswith(f":{lb_port}")


def test_graceful_shutdown(glance: dict[str, str], compose: dict[str, Any], deployment: dict[str, Any],
                           api_container: dict[str, Any]) -> None:
    from pseudoword.cli import server_cmd

    graceful, pre_stop = seconds(glance["graceful shutdown"].split()[0]), seconds(glance["preStop sleep"].split()[0])
    served = re.search(r"timeout_graceful_shutdown=(\d+)", inspect.getsource(server_cmd.serve))
    assert served and int(served[1]) == graceful, "README and `pseudoword serve` disagree on the shutdown grace"
    assert api_container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(pre_stop)]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + graceful
    assert seconds(compose["services"]["api"]["stop_grace_period"]) > graceful


def test_non_root_everywhere(glance: dict[str, str], dockerfile: str,
                             manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    uid = int(glance["image user"])
    assert uid != 0
    assert re.search(rf"^USER {uid}:{uid}$", dockerfile, re.M)
    workloads = [doc["spec"]["template"]["spec"] for doc in manifests.values() if doc["kind"] in ("Deployment", "Job")]
    assert len(workloads) == 2
    for pod in workloads:
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == uid
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]


# --- settings: README table, compose, Kubernetes, entrypoint and the server agree ---------------

def test_every_setting_the_files_use_is_documented_and_vice_versa(
        settings_table: dict[str, dict[str, str]], compose: dict[str, Any],
        manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    used: set[str] = set()
    for name in ("api", "migrate"):
        used |= set(compose["services"][name]["environment"])
    used |= set(manifests[("ConfigMap", "pseudoword-config")]["data"])
    for workload in (doc for doc in manifests.values() if doc["kind"] in ("Deployment", "Job")):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            used |= env_names(container)
    used |= {key for key in manifests[("Secret", "pseudoword-secrets")]["stringData"] if key.isupper()}
    assert used == set(settings_table), (
        f"undocumented: {sorted(used - set(settings_table))}; documented but unused: {sorted(set(settings_table) - used)}")


def test_documented_settings_are_the_ones_the_server_reads(settings_table: dict[str, dict[str, str]]) -> None:
    from pseudoword.registry.service.settings import MiB, Settings

    source = inspect.getsource(Settings.from_env)
    entrypoint = (DEPLOY / "docker-entrypoint.sh").read_text()
    loop = re.search(r"^for name in ([A-Z0-9_ ]+); do$", entrypoint, re.M)
    assert loop, "docker-entrypoint.sh must list the *_FILE settings it reads"
    by_reader: dict[str, set[str]] = {}
    for name, row in settings_table.items():
        by_reader.setdefault(row["read by"], set()).add(name)
    assert set(by_reader) == {"server", "entrypoint", "uvicorn"}
    for name in by_reader["server"]:
        assert f'"{name}"' in source, f"Settings.from_env does not read {name}"
    assert set(re.findall(r'"(PSEUDOWORD_[A-Z0-9_]+)"', source)) == by_reader["server"], \
        "the server reads a setting deploy/README.md does not document"
    assert {f"PSEUDOWORD_{name}_FILE" for name in loop[1].split()} == by_reader["entrypoint"]
    for name in by_reader["entrypoint"]:
        assert name.removesuffix("_FILE") in by_reader["server"]
    # The documented defaults are the server's.
    defaults = Settings()
    assert int(settings_table["PSEUDOWORD_MAX_UPLOAD_BYTES"]["default"]) == defaults.max_upload_bytes == 8 * MiB
    assert settings_table["PSEUDOWORD_LOG_LEVEL"]["default"] == defaults.log_level
    assert settings_table["PSEUDOWORD_LOG_FORMAT"]["default"].split()[0] == defaults.log_format
    assert settings_table["PSEUDOWORD_PRESIGNED_DOWNLOADS"]["default"] == "0" and defaults.presigned_downloads is False


def test_compose_variables_are_documented_with_their_defaults(readme: str) -> None:
    documented = {row["variable"]: row["default"] for row in markdown_table(readme, "variable")}
    text = (DEPLOY / "docker-compose.yml").read_text()
    used = dict(re.findall(r"\$\{(\w+):-([^}]*)\}", text))
    assert not re.search(r"\$\{\w+\}", text), "every compose variable needs a default"
    assert used == documented


def test_settings_match_between_compose_and_kubernetes(compose: dict[str, Any],
                                                       manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    env = compose["services"]["api"]["environment"]
    config = manifests[("ConfigMap", "pseudoword-config")]["data"]
    assert compose["services"]["migrate"]["environment"] == env
    for name in ("PSEUDOWORD_DATA_DIR", "PSEUDOWORD_LOG_FORMAT", "PSEUDOWORD_MAX_UPLOAD_BYTES", "FORWARDED_ALLOW_IPS"):
        assert str(env[name]).removeprefix("${PSEUDOWORD_MAX_UPLOAD_BYTES:-").rstrip("}") == str(config[name])
    assert env["PSEUDOWORD_LOG_FORMAT"] == "json"
    assert config["PSEUDOWORD_PRESIGNED_DOWNLOADS"] == "1"
    for url in (env["PSEUDOWORD_STORAGE_URL"], config["PSEUDOWORD_STORAGE_URL"]):
        assert url.startswith("s3://") and "region=" in url  # a region: presigning needs no round trip


# --- secrets are wired, never written into the files --------------------------------------------

def test_compose_secrets_are_files_and_never_plain_environment(compose: dict[str, Any]) -> None:
    declared = compose["secrets"]
    made = set(re.findall(r"^write (\w+) ", (DEPLOY / "make-secrets.sh").read_text(), re.M))
    assert {name: spec["file"] for name, spec in declared.items()} == {name: f"./secrets/{name}" for name in made}
    for name, service in compose["services"].items():
        mounted = set(service.get("secrets", []))
        assert mounted <= set(declared), f"{name} mounts an undeclared secret"
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|_KEY|DATABASE_URL", key):
                assert key.endswith("_FILE"), f"{name}: {key} must come from a secret file"
                secret = str(value).removeprefix("/run/secrets/")
                assert secret in mounted, f"{name}: {key} names {value}, which it does not mount"
    api = compose["services"]["api"]
    assert api["environment"]["PSEUDOWORD_ADMIN_TOKEN_FILE"] == "/run/secrets/admin_token"
    assert api["read_only"] is True


def test_kubernetes_wiring(manifests: dict[tuple[str, str], dict[str, Any]], deployment: dict[str, Any]) -> None:
    secret = manifests[("Secret", "pseudoword-secrets")]
    config = manifests[("ConfigMap", "pseudoword-config")]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    for kind in ("Service", "PodDisruptionBudget"):
        [doc] = of_kind(manifests, kind)
        selector = doc["spec"]["selector"]
        assert selector.get("matchLabels", selector).items() <= pod_labels.items(), f"{kind} selects no replica"
    for workload in (doc for doc in manifests.values() if doc["kind"] in ("Deployment", "Job")):
        pod = workload["spec"]["template"]["spec"]
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in manifests
            for item in container.get("env", []):
                ref = item["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
            mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
            assert set(mounts) == set(volumes), f"{workload['metadata']['name']}: mounts and volumes differ"
    # The admin token file the ConfigMap names is the Secret's key, mounted there in the replicas.
    pod = deployment["spec"]["template"]["spec"]
    token = next(volume for volume in pod["volumes"] if volume["name"] == "admin-token")["secret"]
    assert token["secretName"] == secret["metadata"]["name"]
    [item] = token["items"]
    assert item["key"] in secret["stringData"]
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "admin-token"]
    assert mount["readOnly"] is True
    assert f"{mount['mountPath']}/{item['path']}" == config["data"]["PSEUDOWORD_ADMIN_TOKEN_FILE"]
    [job] = of_kind(manifests, "Job")
    [migrate] = job["spec"]["template"]["spec"]["containers"]
    assert migrate["args"] == ["pseudoword", "migrate"]
    # The one-shot job holds only what migrating needs: the database URL.
    assert env_names(migrate) == {"PSEUDOWORD_DATABASE_URL"}
    assert not [v for v in job["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1
    # The replicas get everything they need to reach PostgreSQL and S3.
    [api] = deployment["spec"]["template"]["spec"]["containers"]
    assert {"PSEUDOWORD_DATABASE_URL", "PSEUDOWORD_S3_ACCESS_KEY", "PSEUDOWORD_S3_SECRET_KEY"} <= env_names(api)
    [ingress] = of_kind(manifests, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert ("Service", backend["name"]) in manifests


# --- image, load balancer, entrypoint, secrets script -------------------------------------------

def test_dockerfile_builds_a_small_cpu_only_server_image(dockerfile: str) -> None:
    assert "https://download.pytorch.org/whl/cpu" in dockerfile
    assert re.search(r'pip install .*"\.\[server\]"', dockerfile)
    installs = [line for line in dockerfile.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
    assert len(installs) == 2  # torch from the CPU index, then the project
    assert "--index-url https://download.pytorch.org/whl/cpu" in installs[0] and "torch==" in installs[0]
    for line in installs:  # no inference stack in the server image
        assert not re.search(r"runtime|dev\]|diffusers|transformers", line), line
    assert re.search(r"^HEALTHCHECK ", dockerfile, re.M) and re.search(r'^ENTRYPOINT \["docker-entrypoint\.sh"\]$',
                                                                        dockerfile, re.M)
    # The build copies the package folders pyproject.toml maps, and the dockerignore lets them in.
    pyproject = (ROOT / "pyproject.toml").read_text()
    folders = set(re.findall(r'"pseudoword(?:\.\w+)?" = "(\w+)"', pyproject))
    assert folders == {"package", "registry", "runtime", "cli"}
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for folder in folders:
        assert f"COPY {folder}/ {folder}/" in dockerfile and f"!{folder}/" in ignore
    for path in ("pyproject.toml", "README.md", "LICENSE", "deploy/docker-entrypoint.sh"):
        assert f"!{path}" in ignore


def test_nginx_matches_the_server(nginx: str, manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    from pseudoword.registry.service.observability import _SAFE_ID
    from pseudoword.registry.service.settings import Settings

    body = re.search(r"client_max_body_size (\d+)m;", nginx)
    assert body and int(body[1]) * 1024 * 1024 > Settings().max_upload_bytes
    [ingress] = of_kind(manifests, "Ingress")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == f"{body[1]}m"
    # nginx forwards exactly the request IDs the replicas accept (else makes its own).
    forwarded = re.search(r'"~\^(.+)\$"\s+\$http_x_request_id;', nginx)
    assert forwarded and forwarded[1] == _SAFE_ID.pattern
    assert "proxy_set_header X-Request-ID $pseudoword_request_id;" in nginx
    assert "non_idempotent" not in nginx, "a publish must never be retried on another replica"


def test_errors_nginx_makes_itself_are_registry_errors(nginx: str) -> None:
    from pseudoword.registry.core.errors import RegistryUnreachable, TooLarge, error_for_code

    bodies = {int(code): json.loads(body.replace("\\n", "")) for code, body in
              re.findall(r"^\s*return (\d{3}) '(.+)';$", nginx, re.M)}
    assert set(bodies) == {413, 503}
    for body in bodies.values():
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}
    assert error_for_code(bodies[413]["error"]["code"]) is TooLarge
    assert error_for_code(bodies[503]["error"]["code"]) is RegistryUnreachable
    limit = re.search(r"client_max_body_size (\d+)m;", nginx)
    assert limit and bodies[413]["error"]["detail"]["limit_bytes"] == int(limit[1]) * 1024 * 1024
    assert re.search(r"^\s*error_page 413 @too_large;$", nginx, re.M)
    assert re.search(r"^\s*error_page 502 503 504 =503 @no_replica;$", nginx, re.M)


def _entrypoint(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(DEPLOY / "docker-entrypoint.sh"), *command], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], **env}, timeout=30)


def test_entrypoint_turns_secret_files_into_settings(tmp_path: Path) -> None:
    url = tmp_path / "database_url"
    url.write_text("postgresql+psycopg://u:p%40ss@db:5432/x\n")
    done = _entrypoint({"PSEUDOWORD_DATABASE_URL_FILE": str(url)},
                       "sh", "-c", 'echo "$PSEUDOWORD_DATABASE_URL|${PSEUDOWORD_DATABASE_URL_FILE-unset}"')
    assert done.returncode == 0, done.stderr
    assert done.stdout == "postgresql+psycopg://u:p%40ss@db:5432/x|unset\n"


def test_entrypoint_refuses_ambiguous_or_missing_secrets(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    key = tmp_path / "key"
    key.write_text("secret")
    both = _entrypoint({"PSEUDOWORD_S3_SECRET_KEY_FILE": str(key), "PSEUDOWORD_S3_SECRET_KEY": "x"},
                       "touch", str(marker))
    assert both.returncode == 64 and "not both" in both.stderr
    missing = _entrypoint({"PSEUDOWORD_S3_ACCESS_KEY_FILE": str(tmp_path / "absent")}, "touch", str(marker))
    assert missing.returncode == 66 and "not a readable file" in missing.stderr
    assert "secret" not in both.stderr + missing.stderr
    assert not marker.exists(), "the command must not run with a broken secret"


def test_make_secrets_creates_each_compose_secret_once(tmp_path: Path, compose: dict[str, Any]) -> None:
    script = tmp_path / "make-secrets.sh"
    shutil.copy(DEPLOY / "make-secrets.sh", script)
    first = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=30)
    assert first.returncode == 0, first.stderr
    secrets_dir = tmp_path / "secrets"
    values = {path.name: path.read_text().strip() for path in secrets_dir.iterdir()}
    assert set(values) == set(compose["secrets"])
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    assert f":{values['postgres_password']}@postgres:5432/" in values["database_url"]
    assert values["admin_token"].startswith("pw_") and len(values["admin_token"]) >= 20
    assert len(set(values.values())) == len(values), "every secret is distinct"
    again = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=30)
    assert again.returncode == 0 and "created" not in again.stdout
    assert {path.name: path.read_text().strip() for path in secrets_dir.iterdir()} == values
