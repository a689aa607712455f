#!/usr/bin/env python3
"""Project rules for deploy/kubernetes/tokengate-sidecar.yaml that a JSON schema
cannot express. Run by deploy/check after the schema validation
(kubernetes-validate --strict). Needs PyYAML (a kubernetes-validate dependency)
and Python >= 3.11 (tomllib).

Usage: policy_check.py MANIFEST.yaml
"""
import sys
import tomllib

import yaml

PUBLIC_PORT = 8080
ADMIN_PORT = 9090
errors = []


def need(cond, msg):
    if not cond:
        errors.append(msg)


def main(path):
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    need(
        sorted(by_kind) == ["ConfigMap", "Deployment", "Service"],
        f"expected one ConfigMap, Deployment and Service, got {sorted(by_kind)}",
    )
    (cm,) = by_kind["ConfigMap"]
    (svc,) = by_kind["Service"]
    (dep,) = by_kind["Deployment"]

    # proxy.toml in the ConfigMap: valid TOML, listeners where the pod needs them.
    cfg = tomllib.loads(cm["data"]["proxy.toml"])
    need(cfg["listen"]["address"] == f"0.0.0.0:{PUBLIC_PORT}", "[listen] address must be 0.0.0.0:8080")
    need(
        cfg["admin"]["address"] == f"0.0.0.0:{ADMIN_PORT}",
        "[admin] address must be 0.0.0.0:9090 so kubelet probes reach it",
    )
    need(cfg["upstream"]["url"].startswith("http://127.0.0.1:"), "[upstream] url must be the callee on loopback")
    for key in ("openid_configuration", "issuers", "audiences"):
        need(key in cfg.get("auth", {}), f"[auth] {key} missing")

    pod = dep["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    need(set(containers) == {"callee", "tokengate"}, f"containers: {sorted(containers)}")
    tg = containers["tokengate"]
    ports = {p["name"]: p["containerPort"] for p in tg["ports"]}
    need(ports == {"http": PUBLIC_PORT, "admin": ADMIN_PORT}, f"tokengate ports: {ports}")
    need("ports" not in containers["callee"], "callee must not declare ports (loopback only)")

    # The Service exposes tokengate's public port and nothing else.
    for p in svc["spec"]["ports"]:
        need(p["targetPort"] in ("http", PUBLIC_PORT), f"Service port {p} does not target tokengate's 8080")
    need(svc["spec"]["selector"] == dep["spec"]["template"]["metadata"]["labels"], "Service selector != pod labels")

    # Probes on the admin port.
    for probe, url in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = tg.get(probe, {}).get("httpGet", {})
        need(
            get.get("path") == url and get.get("port") in ("admin", ADMIN_PORT),
            f"tokengate {probe} must be GET {url} on the admin port",
        )

    # Config mounted read-only at /etc/tokengate.
    mounts = {m["mountPath"]: m for m in tg.get("volumeMounts", [])}
    need(mounts.get("/etc/tokengate", {}).get("readOnly") is True, "config must be mounted read-only at /etc/tokengate")

    # Hardening and resources on every container.
    pod_sc = pod.get("securityContext", {})
    for name, c in containers.items():
        sc = c.get("securityContext", {})
        need(sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, f"{name}: runAsNonRoot")
        need(sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem")
        need(sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation false")
        need(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: capabilities drop ALL")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
        need(seccomp.get("type") == "RuntimeDefault", f"{name}: seccompProfile RuntimeDefault")
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            need({"cpu", "memory"} <= set(res.get(kind, {})), f"{name}: resources.{kind} cpu and memory")

    if errors:
        for e in errors:
            print(f"policy: {path}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
