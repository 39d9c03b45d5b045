"""deploy/k8s: the manifests parse and hold together (no cluster here: YAML, entrypoint, kustomize).

What a cluster would only tell us after a failed rollout: probes on the port the server
listens on, the recovery volume where `-r` points, replica counts that agree, partition shares
that never overlap, rules and configuration that load.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.collectors.targets import load_targets
from connectors.config import MonitoringSettings
from connectors.config import parse as parse_settings
from rules.loader import load_rules
from rules.routing.config import load_routing_file

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
ENTRYPOINT = K8S / "entrypoint.sh"
IMAGE_ENTRYPOINT = "/app/deploy/k8s/entrypoint.sh"
FLOWS = {"alerting", "storage", "rollups", "collect", "notify"}


def kustomization() -> dict[str, Any]:
    doc = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def resources() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in kustomization()["resources"]:
        docs.extend(d for d in yaml.safe_load_all((K8S / name).read_text()) if d)
    return docs


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in resources() if d["kind"] == kind]


def statefulsets() -> dict[str, dict[str, Any]]:
    return {s["metadata"]["name"]: s for s in of_kind("StatefulSet")}


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def flow_container(sts: dict[str, Any]) -> dict[str, Any]:
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    return c


def init_container(sts: dict[str, Any]) -> dict[str, Any]:
    (c,) = sts["spec"]["template"]["spec"]["initContainers"]
    return c


def read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not KEY=value"
        out[key] = value
    return out


def config_env() -> dict[str, str]:
    return read_env_file(K8S / "config.env")


def secret_example() -> dict[str, str]:
    (doc,) = [d for d in yaml.safe_load_all((K8S / "secret.example.yaml").read_text()) if d]
    data = doc["stringData"]
    assert isinstance(data, dict)
    return {str(k): str(v) for k, v in data.items()}


def readme_table() -> dict[str, dict[str, str]]:
    """The recovery table of deploy/k8s/README.md, by flow."""
    text = (K8S / "README.md").read_text()
    rows: dict[str, dict[str, str]] = {}
    header: list[str] | None = None
    for line in text.splitlines():
        cells = [c.replace("`", "").strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == "flow" and "RECOVERY_PARTITIONS" in cells:
            header = cells
            continue
        if header is not None:
            if not line.startswith("|"):
                break
            if set(line) <= set("|- "):
                continue
            rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


# -- structure ----------------------------------------------------------------------------


def test_one_statefulset_service_and_pdb_per_flow() -> None:
    names = {f"gds-{f}" for f in FLOWS}
    assert set(statefulsets()) == names
    # plus the control-plane API's Deployment (api.yaml): its checks are the test_api_* below
    assert {s["metadata"]["name"] for s in of_kind("Service")} == names | {"gds-api", "gds-gateway"}
    assert {p["metadata"]["name"] for p in of_kind("PodDisruptionBudget")} == names | {
        "gds-api",
        "gds-gateway",
    }
    assert [n["metadata"]["name"] for n in of_kind("Namespace")] == [kustomization()["namespace"]]


def test_headless_services_publish_not_ready_pods_on_the_bytewax_port() -> None:
    services = {s["metadata"]["name"]: s for s in of_kind("Service")}
    for name, sts in statefulsets().items():
        svc = services[sts["spec"]["serviceName"]]
        assert svc["spec"]["clusterIP"] == "None", name
        assert svc["spec"]["publishNotReadyAddresses"] is True, name
        assert svc["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"], name
        assert {p["name"]: p["port"] for p in svc["spec"]["ports"]}["bytewax"] == 9999, name


def test_statefulsets_start_together_and_update_only_as_a_whole() -> None:
    for name, sts in statefulsets().items():
        spec = sts["spec"]
        assert spec["podManagementPolicy"] == "Parallel", name
        assert spec["updateStrategy"] == {"type": "OnDelete"}, name
        assert spec["persistentVolumeClaimRetentionPolicy"] == {
            "whenDeleted": "Retain",
            "whenScaled": "Retain",
        }
        assert spec["template"]["metadata"]["labels"] == spec["selector"]["matchLabels"], name


def test_pdbs_select_their_statefulset() -> None:
    pdbs = {p["metadata"]["name"]: p for p in of_kind("PodDisruptionBudget")}
    for name, sts in statefulsets().items():
        assert pdbs[name]["spec"]["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
        assert pdbs[name]["spec"]["maxUnavailable"] == 1


def test_every_container_has_requests_and_limits() -> None:
    for name, sts in statefulsets().items():
        pod = sts["spec"]["template"]["spec"]
        for c in pod["containers"] + pod["initContainers"]:
            for kind in ("requests", "limits"):
                assert set(c["resources"][kind]) == {"cpu", "memory"}, f"{name}/{c['name']} {kind}"


def test_probes_hit_the_monitoring_port_and_paths() -> None:
    settings = MonitoringSettings.from_env(config_env())
    for name, sts in statefulsets().items():
        c = flow_container(sts)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"bytewax": 9999, "metrics": settings.port}, name
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, name
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, name
        assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, name
        annotations = sts["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(settings.port),
            "prometheus.io/path": "/metrics",
        }, name


# Prometheus' allocations of 9100-9999 (full since 2023) and what usually runs beside a flow.
TAKEN_PORTS = {
    *range(9090, 10000),  # Prometheus, Alertmanager, Pushgateway, every registered exporter
    3000, 3030, 3100, 4317, 4318, 5432, 6379, 8000, 8080, 8081, 8083, 8088, 8123, 8888, 8889, 9000,
}  # fmt: skip


def test_the_monitoring_port_is_no_common_exporters_and_pods_bind_all_interfaces() -> None:
    """9100 is node_exporter's: a flow pod on a node's host network, or beside it, would clash."""
    settings = MonitoringSettings.from_env(config_env())
    assert settings.port == MonitoringSettings().port not in TAKEN_PORTS
    assert settings.host == "0.0.0.0"  # the kubelet probes the pod IP; the code's default is local
    assert MonitoringSettings().host == "127.0.0.1"
    services = {s["metadata"]["name"]: s for s in of_kind("Service")}
    for name, sts in statefulsets().items():
        svc_ports = {p["name"]: p["port"] for p in services[sts["spec"]["serviceName"]]["spec"]["ports"]}
        assert svc_ports["metrics"] == settings.port, name


def test_the_command_runs_the_entrypoint_on_the_flow_module() -> None:
    for name, sts in statefulsets().items():
        flow = name.removeprefix("gds-")
        assert flow_container(sts)["command"] == [IMAGE_ENTRYPOINT, "run", f"flows.{flow}"]
        assert init_container(sts)["command"] == [IMAGE_ENTRYPOINT, "init-recovery"]
    assert ENTRYPOINT.is_file() and os.access(ENTRYPOINT, os.X_OK)
    containerfile = (ROOT / "deploy" / "Containerfile").read_text()
    assert "COPY deploy/k8s/entrypoint.sh ./deploy/k8s/entrypoint.sh" in containerfile
    assert re.search(r"^WORKDIR /app$", containerfile, re.M)
    assert f'ENTRYPOINT ["{IMAGE_ENTRYPOINT}"]' in containerfile
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", containerfile, re.M)
    assert "-c constraints.txt" in containerfile


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_the_flow_module_exists(flow: str) -> None:
    if not (ROOT / "flows" / f"{flow}.py").exists():
        pytest.skip(f"flows/{flow}.py is not written yet")
    assert "flow" in (ROOT / "flows" / f"{flow}.py").read_text()


# -- recovery -----------------------------------------------------------------------------


def test_recovery_volume_is_mounted_where_r_points_in_both_containers() -> None:
    for name, sts in statefulsets().items():
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"], name
        for c in (flow_container(sts), init_container(sts)):
            directory = env_of(c)["BYTEWAX_RECOVERY_DIRECTORY"]
            mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
            assert mounts[claim["metadata"]["name"]] == directory, f"{name}/{c['name']}"


def test_replicas_partitions_and_intervals_agree_with_each_other_and_the_readme() -> None:
    table = readme_table()
    assert set(table) == FLOWS
    for name, sts in statefulsets().items():
        flow = name.removeprefix("gds-")
        replicas = sts["spec"]["replicas"]
        run_env, init_env = env_of(flow_container(sts)), env_of(init_container(sts))
        assert run_env["BYTEWAX_STATEFULSET_NAME"] == init_env["BYTEWAX_STATEFULSET_NAME"] == name
        assert int(run_env["BYTEWAX_REPLICAS"]) == replicas, f"{name}: BYTEWAX_REPLICAS != spec.replicas"
        workers = int(run_env["BYTEWAX_WORKERS_PER_PROCESS"])
        partitions = int(init_env["RECOVERY_PARTITIONS"])
        first = int(init_env["RECOVERY_INIT_REPLICAS"])
        assert first <= partitions and replicas * workers <= partitions, name
        assert (
            int(run_env["BYTEWAX_SNAPSHOT_INTERVAL"]) >= 1
            and int(run_env["BYTEWAX_RECOVERY_BACKUP_INTERVAL"]) >= 0
        )
        row = table[flow]
        assert int(row["replicas"]) == replicas, flow
        assert int(row["RECOVERY_PARTITIONS"]) == partitions, flow
        assert int(row["RECOVERY_INIT_REPLICAS"]) == first, flow
        assert int(row["-s snapshot (s)"]) == int(run_env["BYTEWAX_SNAPSHOT_INTERVAL"]), flow
        assert int(row["-b backup (s)"]) == int(run_env["BYTEWAX_RECOVERY_BACKUP_INTERVAL"]), flow
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        assert row["PVC"] == claim["spec"]["resources"]["requests"]["storage"], flow


def entrypoint(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args],
        env={"PATH": path, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_entrypoint_computes_process_id_addresses_and_recovery_flags(tmp_path: Path, flow: str) -> None:
    name = f"gds-{flow}"
    sts = statefulsets()[name]
    run_env = env_of(flow_container(sts))
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    (recovery / "part-0.sqlite3").touch()
    env = {
        **run_env,
        "BYTEWAX_POD_NAME": f"{name}-{sts['spec']['replicas'] - 1}",
        "POD_NAMESPACE": "gds",
        "BYTEWAX_HOSTFILE_PATH": str(tmp_path / "hostfile.txt"),
        "BYTEWAX_RECOVERY_DIRECTORY": str(recovery),
        "ENTRYPOINT_DRY_RUN": "1",
    }
    r = entrypoint(["run", f"flows.{flow}"], env)
    assert r.returncode == 0, r.stderr
    n = sts["spec"]["replicas"]
    addresses = ";".join(f"{name}-{k}.{name}.gds.svc:9999" for k in range(n))
    assert r.stdout.splitlines() == [
        "python", "-m", "bytewax.run", f"flows.{flow}",
        "-w", run_env["BYTEWAX_WORKERS_PER_PROCESS"], "-i", str(n - 1), "-a", addresses,
        "-r", str(recovery),
        "-s", run_env["BYTEWAX_SNAPSHOT_INTERVAL"],
        "-b", run_env["BYTEWAX_RECOVERY_BACKUP_INTERVAL"],
    ]  # fmt: skip
    assert (tmp_path / "hostfile.txt").read_text().splitlines() == addresses.split(";")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"BYTEWAX_POD_NAME": "gds-alerting-5"}, "ordinal 5 >= BYTEWAX_REPLICAS"),
        ({"BYTEWAX_POD_NAME": "other-0"}, "is not gds-alerting-<ordinal>"),
        ({"BYTEWAX_SNAPSHOT_INTERVAL": ""}, "recovery needs BYTEWAX_SNAPSHOT_INTERVAL"),
        ({"BYTEWAX_ADDRESSES": "127.0.0.1:1"}, "1 address(es) for BYTEWAX_REPLICAS=2"),
    ],
)
def test_entrypoint_refuses_inconsistent_settings(
    tmp_path: Path, changes: dict[str, str], message: str
) -> None:
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    (recovery / "part-0.sqlite3").touch()
    env = {
        **env_of(flow_container(statefulsets()["gds-alerting"])),
        "BYTEWAX_POD_NAME": "gds-alerting-0",
        "BYTEWAX_HOSTFILE_PATH": str(tmp_path / "hostfile.txt"),
        "BYTEWAX_RECOVERY_DIRECTORY": str(recovery),
        "ENTRYPOINT_DRY_RUN": "1",
        **changes,
    }
    env = {k: v for k, v in env.items() if v}
    r = entrypoint(["run", "flows.alerting"], env)
    assert r.returncode != 0
    assert message in r.stderr


def test_entrypoint_refuses_to_run_without_initialised_recovery(tmp_path: Path) -> None:
    env = {
        **env_of(flow_container(statefulsets()["gds-alerting"])),
        "BYTEWAX_POD_NAME": "gds-alerting-0",
        "BYTEWAX_HOSTFILE_PATH": str(tmp_path / "hostfile.txt"),
        "BYTEWAX_RECOVERY_DIRECTORY": str(tmp_path),
        "ENTRYPOINT_DRY_RUN": "1",
    }
    r = entrypoint(["run", "flows.alerting"], env)
    assert r.returncode != 0 and "init-recovery initContainer did not run" in r.stderr


def init_pod(tmp_path: Path, ordinal: int, init_env: dict[str, str]) -> Path:
    volume = tmp_path / f"recovery-{ordinal}"
    env = {
        **init_env,
        "BYTEWAX_POD_NAME": f"{init_env['BYTEWAX_STATEFULSET_NAME']}-{ordinal}",
        "BYTEWAX_RECOVERY_DIRECTORY": str(volume),
    }
    r = entrypoint(["init-recovery"], env)
    assert r.returncode == 0, r.stderr
    return volume


def parts(volume: Path) -> set[int]:
    return {int(p.name.split("-")[1].split(".")[0]) for p in volume.glob("part-*.sqlite3")}


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_init_recovery_gives_each_first_pod_a_disjoint_share_once(tmp_path: Path, flow: str) -> None:
    init_env = env_of(init_container(statefulsets()[f"gds-{flow}"]))
    n = int(init_env["RECOVERY_PARTITIONS"])
    first = int(init_env["RECOVERY_INIT_REPLICAS"])
    shares = [parts(init_pod(tmp_path, i, init_env)) for i in range(first)]
    assert shares == [{k for k in range(n) if k % first == i} for i in range(first)]  # real bytewax files
    assert set().union(*shares) == set(range(n))

    again = init_pod(tmp_path, 0, init_env)  # a restart: resume, create nothing
    assert parts(again) == shares[0]

    added = init_pod(tmp_path, first, init_env)  # a scale-up: the new pod holds none
    assert parts(added) == set() and (added / ".gds-recovery").exists()

    moved = tmp_path / f"recovery-{first - 1}"  # a scale-down emptied it; the marker stays
    for f in moved.glob("part-*"):
        f.unlink()
    assert parts(init_pod(tmp_path, first - 1, init_env)) == set()


def test_bytewax_recovery_files_are_named_as_the_entrypoint_expects(tmp_path: Path) -> None:
    from bytewax.recovery import init_db_dir

    init_db_dir(tmp_path, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "part-0.sqlite3",
        "part-1.sqlite3",
        "part-2.sqlite3",
    ]


# -- configuration ------------------------------------------------------------------------


def test_rules_configmap_is_the_bundled_rules_and_loads() -> None:
    copy = K8S / "rules" / "alert-rules.yml"
    bundled = ROOT / "rules" / "bundled" / "alert-rules.yml"
    assert copy.read_bytes() == bundled.read_bytes(), (
        "deploy/k8s/rules/alert-rules.yml differs from rules/bundled/alert-rules.yml: copy it again"
    )
    ruleset = load_rules([copy.parent])
    assert ruleset.rules
    generators = {g["name"]: g for g in kustomization()["configMapGenerator"]}
    assert generators["gds-rules"]["files"] == ["rules/alert-rules.yml"]
    # a stable name: an update reaches the running pods' volume, whose job reloads it live
    assert generators["gds-rules"]["options"]["disableNameSuffixHash"] is True
    c = flow_container(statefulsets()["gds-alerting"])
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in statefulsets()["gds-alerting"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["rules"]["configMap"]["name"] == "gds-rules"
    assert mounts["rules"]["mountPath"] == env_of(c)["RULES_PATH"] == "/etc/gds/rules"
    assert "subPath" not in mounts["rules"]


def test_routes_configmap_is_mounted_where_notify_routes_points_and_loads() -> None:
    copy = K8S / "routes" / "alertmanager.yml"
    config = load_routing_file(copy)  # raises RoutingConfigError listing every problem
    sample = load_routing_file(ROOT / "flows" / "sample" / "routes.yml")
    assert set(config.receivers) == set(sample.receivers) == {"dba-team", "on-call"}
    generators = {g["name"]: g for g in kustomization()["configMapGenerator"]}
    assert generators["gds-routes"]["files"] == ["routes/alertmanager.yml"]
    sts = statefulsets()["gds-notify"]
    c = flow_container(sts)
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["routes"]["configMap"]["name"] == "gds-routes"
    assert "subPath" not in mounts["routes"] and mounts["routes"]["readOnly"] is True
    assert env_of(c)["NOTIFY_ROUTES"] == f"{mounts['routes']['mountPath']}/alertmanager.yml"


def test_alerting_pods_leave_delivery_to_the_notify_pods() -> None:
    """Both delivering would send every notification twice; neither would send none."""
    alerting = env_of(flow_container(statefulsets()["gds-alerting"]))
    notify = env_of(flow_container(statefulsets()["gds-notify"]))
    assert alerting["NOTIFY_DELIVERY"] == "separate"
    assert statefulsets()["gds-notify"]["spec"]["replicas"] >= 1
    assert "NOTIFY_ROUTES" not in alerting  # only read where delivery happens
    assert notify["NOTIFY_ROUTES"].startswith("/etc/gds/routes/")
    # config.env is every flow's: a value there would hold for the other one too
    assert not {"NOTIFY_DELIVERY", "NOTIFY_ROUTES", "NOTIFY_START"} & set(config_env())
    for name, sts in statefulsets().items():
        if name not in ("gds-alerting", "gds-notify"):
            assert not {k for k in env_of(flow_container(sts)) if k.startswith("NOTIFY_")}, name


def test_each_flow_pods_environment_passes_its_validation() -> None:
    """config.env + the Secret + the pod's own env, with the mounted files where the test has them."""
    from flows.notify import load_routes

    local = {"/etc/gds/rules": K8S / "rules", "/etc/gds/routes": K8S / "routes"}
    for name, sts in statefulsets().items():
        pod_env = env_of(flow_container(sts))
        for key, value in pod_env.items():
            for mounted, here in local.items():
                if value.startswith(mounted):
                    pod_env[key] = str(here) + value.removeprefix(mounted)
        env = {**config_env(), **secret_example(), **pod_env}
        settings = parse_settings(env)  # raises ConfigError listing every problem
        MonitoringSettings.from_env(env)
        if name == "gds-notify":
            routes = load_routes(settings)  # what flows.notify checks at start
            assert routes is not None and settings.notify_start == "earliest"
        if name == "gds-alerting":
            assert settings.notify_delivery == "separate"
            assert [str(p) for p in settings.rules_paths] == [str(K8S / "rules")]


def test_config_env_and_example_secret_pass_the_flows_validation() -> None:
    env = {**config_env(), **secret_example(), "RULES_PATH": str(K8S / "rules")}
    settings = parse_settings(env)  # raises ConfigError listing every problem
    assert settings.bootstrap and not settings.embedded
    assert settings.notify_url.startswith("https://")
    MonitoringSettings.from_env(env)
    assert "RULES_PATH" not in config_env()  # set on the alerting pods only, where it is mounted


def test_secret_is_an_example_with_placeholders_only() -> None:
    assert "secret.example.yaml" not in kustomization()["resources"]
    for key, value in secret_example().items():
        assert "REPLACE_ME" in value, key
    refs = {
        f["secretRef"]["name"]
        for sts in statefulsets().values()
        for f in flow_container(sts)["envFrom"]
        if "secretRef" in f
    }
    assert refs == {"gds-secrets"}


def test_collect_targets_configmap_loads() -> None:
    config = load_targets(
        K8S / "collect" / "targets.yml", {"PG_MONITOR_DSN": secret_example()["PG_MONITOR_DSN"]}
    )
    assert config.targets
    c = flow_container(statefulsets()["gds-collect"])
    assert env_of(c)["COLLECT_TARGETS"] == "/etc/gds/collect/targets.yml"


# -- kustomize ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> Iterator[list[dict[str, Any]]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: kustomize rendering not checked")
    r = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=False, timeout=120
    )
    assert r.returncode == 0, r.stderr
    yield [d for d in yaml.safe_load_all(r.stdout) if d]


def test_kustomize_renders_hashed_configmaps_and_the_image(rendered: list[dict[str, Any]]) -> None:
    configmaps = {d["metadata"]["name"] for d in rendered if d["kind"] == "ConfigMap"}
    image = "{newName}:{newTag}".format(**kustomization()["images"][0])
    for d in rendered:
        assert d["metadata"].get("namespace", "gds") == "gds" or d["kind"] == "Namespace"
        if d["kind"] != "StatefulSet":
            continue
        pod = d["spec"]["template"]["spec"]
        refs = {
            f["configMapRef"]["name"] for c in pod["containers"] for f in c["envFrom"] if "configMapRef" in f
        }
        refs |= {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
        assert refs and refs <= configmaps, d["metadata"]["name"]
        # hashed names roll the pods on a change; the rules keep theirs (reloaded live)
        assert all(re.fullmatch(r"gds-[a-z-]+-[a-z0-9]{10}", n) for n in refs - {"gds-rules"})
        assert {c["image"] for c in pod["containers"] + pod["initContainers"]} == {image}
    config = next(
        d for d in rendered if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("gds-config-")
    )
    assert config["data"] == config_env()  # the env file arrives unaltered (regex backslashes included)


# -- the control-plane API (api.yaml) ---------------------------------------------------------


def api_deployment() -> dict[str, Any]:
    (dep,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "gds-api"]
    return dep


def test_api_deployment_runs_replicas_behind_a_service_with_probes_on_its_port() -> None:
    from connectors.config import ApiSettings

    dep = api_deployment()
    assert dep["spec"]["replicas"] == 2  # stateless: each replica folds the control topic itself
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["python", "-m", "connectors.api"]
    assert set(c["resources"]["requests"]) == set(c["resources"]["limits"]) == {"cpu", "memory"}
    env = env_of(c)
    port = ApiSettings.from_env(env).api_port
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": port}
    assert env["API_HOST"] == "0.0.0.0"
    assert (
        c["livenessProbe"]["httpGet"] == c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    )
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"] == labels
    (svc,) = [s for s in of_kind("Service") if s["metadata"]["name"] == "gds-api"]
    assert svc["spec"]["selector"] == labels
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(port, "http")]
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)


def test_api_tokens_come_from_a_mounted_secret_and_the_pod_environment_passes_validation() -> None:
    from connectors.config import ApiJobSettings

    (c,) = api_deployment()["spec"]["template"]["spec"]["containers"]
    env = env_of(c)
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in api_deployment()["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tokens"]["secret"]["secretName"] == "gds-api-tokens"
    assert mounts["tokens"]["readOnly"] is True
    assert env["API_TOKENS_FILE"].startswith(mounts["tokens"]["mountPath"] + "/")
    assert "API_TOKENS" not in env and "API_TOKENS" not in config_env()  # never a token in git
    settings = ApiJobSettings.from_env({**config_env(), **secret_example(), **env})
    assert settings.pg_dsn and settings.bootstrap and settings.control_topic


# -- the metrics gateway (gateway.yaml) -------------------------------------------------------


def test_gateway_deployment_has_a_service_probes_on_its_port_an_hpa_and_optional_tokens() -> None:
    from connectors.config import GatewaySettings

    (dep,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "gds-gateway"]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["python", "-m", "connectors.gateway"]
    assert set(c["resources"]["requests"]) == set(c["resources"]["limits"]) == {"cpu", "memory"}
    env = env_of(c)
    settings = GatewaySettings.from_env(env)  # the pod's environment passes validation
    assert settings.gateway_host == "0.0.0.0"
    # the root filesystem is read-only: the spool needs a volume of its own, larger than its limit
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    spool = volumes[mounts[env["SPOOL_DIR"]]]["emptyDir"]
    assert int(env["SPOOL_MAX_BYTES"]) < 2 * 1024**3 and spool["sizeLimit"] == "2Gi"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": settings.gateway_port}
    assert (
        c["livenessProbe"]["httpGet"] == c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    )
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    (tokens,) = [e for e in c["env"] if e["name"] == "GATEWAY_TOKENS"]
    assert tokens["valueFrom"]["secretKeyRef"] == {
        "name": "gds-gateway-tokens",
        "key": "tokens",
        "optional": True,
    }
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"] == labels
    (svc,) = [s for s in of_kind("Service") if s["metadata"]["name"] == "gds-gateway"]
    assert svc["spec"]["selector"] == labels
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(settings.gateway_port, "http")]
    (hpa,) = [h for h in of_kind("HorizontalPodAutoscaler") if h["metadata"]["name"] == "gds-gateway"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gds-gateway",
    }
    assert hpa["spec"]["minReplicas"] == dep["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    assert c["resources"]["requests"]["cpu"]  # the HPA's utilisation is relative to it
