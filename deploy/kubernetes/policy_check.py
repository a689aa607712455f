#!/usr/bin/env python3
"""Project rules for the manifests in deploy/kubernetes/ that a JSON schema
cannot express: tokengate-sidecar.yaml (the callee side) and
tokengate-both-sides.yaml (callee and caller side, workload identity). Run by deploy/check after the schema validation
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
    # proxy.toml in the ConfigMap: valid TOML, listeners where the pod needs them.
    (cm,) = by_kind["ConfigMap"]
    cfg = tomllib.loads(cm["data"]["proxy.toml"])
    workload_identity = cfg.get("identity", {}).get("source") == "workload_identity"
    kinds = ["ConfigMap", "Deployment", "Service"] + (["ServiceAccount"] if workload_identity else [])
    need(
        sorted(by_kind) == sorted(kinds),
        f"expected one each of {sorted(kinds)}, got {sorted(by_kind)}",
    )
    (svc,) = by_kind["Service"]
    (dep,) = by_kind["Deployment"]
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
    apps = sorted(set(containers) - {"tokengate"})
    need("tokengate" in containers and len(apps) == 1, f"containers: tokengate and one app, got {sorted(containers)}")
    tg = containers["tokengate"]
    app = containers[apps[0]] if apps else {}
    ports = {p["name"]: p["containerPort"] for p in tg["ports"]}
    need(ports == {"http": PUBLIC_PORT, "admin": ADMIN_PORT}, f"tokengate ports: {ports}")
    need("ports" not in app, "the app must not declare ports (loopback only)")
    if "identity" in cfg:
        caller_side(cfg, dep, pod, tg, app, by_kind)

    # The Service exposes tokengate's public port and nothing else.
    for p in svc["spec"]["ports"]:
        need(p["targetPort"] in ("http", PUBLIC_PORT), f"Service port {p} does not target tokengate's 8080")
    need(
        svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items(),
        "the Service selector must match the pod labels",
    )

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


def caller_side(cfg, dep, pod, tg, app, by_kind):
    """The caller side: loopback-only token listeners, one shared secret from a Secret, and the
    workload identity wiring the webhook needs."""
    endpoint = cfg.get("identity_endpoint", {})
    addr = endpoint.get("address", "127.0.0.1:42356")
    need(addr.startswith("127.0.0.1:"), f"[identity_endpoint] address {addr} must be loopback")
    for i, e in enumerate(cfg.get("egress", [])):
        need(e["listen"].startswith("127.0.0.1:"), f"egress[{i}].listen must be loopback")
    if endpoint:
        # The secret file comes from a Secret, read-only, and the app gets the same value.
        secret_file = endpoint.get("secret_file", "")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mount = next(
            (m for m in tg.get("volumeMounts", []) if secret_file.startswith(m["mountPath"] + "/")),
            None,
        )
        need(mount is not None and mount.get("readOnly") is True, "secret_file must be on a read-only mount")
        secret = volumes.get(mount["name"], {}).get("secret", {}) if mount else {}
        need(bool(secret.get("secretName")), "secret_file must come from a Secret volume")
        env = {e["name"]: e for e in app.get("env", [])}
        need(
            env.get("IDENTITY_ENDPOINT", {}).get("value") == f"http://{addr}/msi/token",
            "the app's IDENTITY_ENDPOINT must be the identity endpoint's /msi/token",
        )
        ref = env.get("IDENTITY_HEADER", {}).get("valueFrom", {}).get("secretKeyRef", {})
        need(
            ref.get("name") == secret.get("secretName")
            and secret_file.endswith("/" + ref.get("key", "\0")),
            "the app's IDENTITY_HEADER must come from the same Secret key as secret_file",
        )
    if cfg["identity"].get("source") == "workload_identity":
        labels = dep["spec"]["template"]["metadata"]["labels"]
        need(labels.get("azure.workload.identity/use") == "true", "pod label azure.workload.identity/use: \"true\"")
        (sa,) = by_kind.get("ServiceAccount", [{}])
        need(pod.get("serviceAccountName") == sa.get("metadata", {}).get("name"), "serviceAccountName names the ServiceAccount")
        need(
            "azure.workload.identity/client-id" in sa.get("metadata", {}).get("annotations", {}),
            "the ServiceAccount needs the azure.workload.identity/client-id annotation",
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
