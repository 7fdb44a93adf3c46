"""The Kubernetes recipe cannot rot: its manifests parse and keep their safety fields, its kernelspec is valid for
gateway_provisioners, and the kernel pod's own command starts an AgentKernel for a gateway on this machine.

No cluster is needed. What runs for real: gateway_provisioners' pod launcher (assembled as its image bootstrap
does) with kernel-agent's kernel class, answering the response manager of gateway_provisioners (over CurveZMQ)
and of Enterprise Gateway 3.3, and the launcher's own pod-rendering code on our template with a hostile
client's values.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.metadata
import json
import os
import re
import socket
import sys
import textwrap
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from jupyter_client.asynchronous import AsyncKernelClient

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kubernetes"
KERNELSPEC = REPO / "kernelspec" / "gateway" / "kernel-agent-k8s"
GATEWAY_NAMESPACE = "kernel-agent-gateway"
KERNELS_NAMESPACE = "kernel-agent-kernels"
KERNEL_CLASS = "kernel_agent.kernel.agent_kernel.AgentKernel"
GATEWAY_PODS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": GATEWAY_NAMESPACE}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "kernel-agent-gateway"}}}


def _gateway_provisioners() -> Path:
    try:
        import gateway_provisioners
    except ImportError:
        pytest.fail("gateway_provisioners is not installed: it is a test dependency (pip install -e '.[test]')",
                    pytrace=False)
    return Path(gateway_provisioners.__file__).parent


def _documents() -> list[dict[str, Any]]:
    found = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    return found


def _kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in _documents() if doc["kind"] == kind]


def _kernelspec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((KERNELSPEC / "kernel.json").read_text())
    return spec


def test_every_manifest_parses_and_lives_in_one_of_our_namespaces() -> None:
    documents = _documents()
    kinds = sorted(doc["kind"] for doc in documents)
    assert kinds == ["Deployment", "Namespace", "Namespace", "NetworkPolicy", "NetworkPolicy", "NetworkPolicy",
                     "NetworkPolicy", "Role", "RoleBinding", "Service", "ServiceAccount", "ServiceAccount"]
    for doc in documents:
        assert doc["apiVersion"] and doc["metadata"]["name"], doc
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] in {GATEWAY_NAMESPACE, KERNELS_NAMESPACE}, doc["metadata"]
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in DEPLOY.glob("*.yaml")
                                                        if p.name != "kustomization.yaml")


def test_both_namespaces_enforce_the_restricted_pod_security_standard() -> None:
    for namespace in _kind("Namespace"):
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_kernel_pods_reach_nothing_but_the_gateway() -> None:
    """Default deny both ways in the kernels' namespace; the only openings are the gateway's, on fixed ports."""
    policies = {p["metadata"]["name"]: p for p in _kind("NetworkPolicy")
                if p["metadata"]["namespace"] == KERNELS_NAMESPACE}
    deny = policies.pop("kernels-deny-all")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    low, high = (int(p) for p in _kernelspec()["metadata"]["kernel_provisioner"]["config"]["port_range"].split(".."))
    for policy in policies.values():
        spec = policy["spec"]
        assert spec["podSelector"] == {"matchLabels": {"component": "kernel"}}
        for rule in spec.get("ingress", []):
            assert rule["from"] == [GATEWAY_PODS]
            assert rule["ports"] == [{"protocol": "TCP", "port": low, "endPort": high}]
        for rule in spec.get("egress", []):
            assert rule["to"] == [GATEWAY_PODS]
            assert rule["ports"] == [{"protocol": "TCP", "port": 8877}]  # the launcher's response, nothing else
    assert {t for p in policies.values() for t in p["spec"]["policyTypes"]} == {"Ingress", "Egress"}


def _restricted_container(container: dict[str, Any]) -> None:
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["privileged"] is False
    assert context["readOnlyRootFilesystem"] is True and context["runAsNonRoot"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), container["resources"]


def _restricted_pod(pod_spec: dict[str, Any]) -> None:
    context = pod_spec["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] != 0 and context["runAsGroup"] != 0
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod_spec["containers"]:
        _restricted_container(container)
    for volume in pod_spec.get("volumes", []):
        assert set(volume) == {"name", "emptyDir"} and volume["emptyDir"]["sizeLimit"], volume


def test_the_gateway_runs_restricted_with_only_its_token_as_a_secret() -> None:
    [deployment] = _kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    _restricted_pod(pod)
    [container] = pod["containers"]
    assert "envFrom" not in container
    from_secrets = [e["name"] for e in container["env"] if "valueFrom" in e]
    assert from_secrets == ["KG_AUTH_TOKEN"]  # Kernel Gateway deletes it from the environment kernels get
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GP_NAMESPACE"] == KERNELS_NAMESPACE and env["GP_SHARED_NAMESPACE"] == "True"
    args = container["args"]
    assert "--KernelGatewayApp.force_kernel_name=kernel-agent-k8s" in args
    assert "--KernelManager.transport_encryption=required" in args
    assert pod["serviceAccountName"] == "kernel-agent-gateway"


def test_the_gateway_may_manage_pods_in_the_kernels_namespace_only() -> None:
    assert _kind("ClusterRole") == [] and _kind("ClusterRoleBinding") == []
    [role] = _kind("Role")
    assert role["metadata"]["namespace"] == KERNELS_NAMESPACE
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"],
                              "verbs": ["create", "get", "list", "watch", "delete"]}]
    [binding] = _kind("RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kernel-agent-gateway",
                                    "namespace": GATEWAY_NAMESPACE}]
    kernel_account = next(a for a in _kind("ServiceAccount") if a["metadata"]["name"] == "kernel-agent-kernel")
    assert kernel_account["automountServiceAccountToken"] is False


def _render_pod(keywords: dict[str, Any]) -> str:
    """Our pod template rendered by the launcher's own function (launch_kubernetes.generate_kernel_pod_yaml).

    The launcher imports the kubernetes client at module level, which this venv does not install, so the
    function and its template path are taken from its source and run here with the modules they use.
    """
    launcher = _gateway_provisioners() / "kernel-launchers" / "kubernetes" / "scripts" / "launch_kubernetes.py"
    tree = ast.parse(launcher.read_text())
    parts = [node for node in tree.body
             if (isinstance(node, ast.FunctionDef) and node.name == "generate_kernel_pod_yaml")
             or (isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "KERNEL_POD_TEMPLATE_PATH"
                                                      for t in node.targets))]
    assert len(parts) == 2, "launch_kubernetes.py no longer renders its template as this recipe expects"
    namespace: dict[str, Any] = {"os": os, "Environment": jinja2.Environment,
                                 "FileSystemLoader": jinja2.FileSystemLoader,
                                 "select_autoescape": jinja2.select_autoescape,
                                 # the launcher is copied next to our template in the gateway image
                                 "__file__": str(KERNELSPEC / "scripts" / "launch_kubernetes.py")}
    exec(compile(ast.Module(body=parts, type_ignores=[]), str(launcher), "exec"), namespace)
    rendered: str = namespace["generate_kernel_pod_yaml"](keywords)
    return rendered


def test_the_kernel_pod_is_confined_whatever_the_client_sends() -> None:
    """The launcher renders every KERNEL_* variable of the request; none of a hostile client's reaches the pod."""
    hostile = {"kernel_uid": 0, "kernel_gid": 0, "kernel_namespace": "kube-system",
               "kernel_service_account_name": "cluster-admin-sa", "kernel_working_dir": "/",
               "kernel_volumes": ["{name: host, hostPath: {path: /}}"],
               "kernel_volume_mounts": ["{name: host, mountPath: /host}"], "kernel_memory_limit": "1Ti",
               "kernel_cpus_limit": 64}
    rendered = _render_pod({**hostile, "kernel_pod_name": "someone-1234", "kernel_id": "1234-abcd",
                            "kernel_image": "registry.example.com/kernel-agent-kernel:0.1.0"})
    for value in ("kube-system", "cluster-admin-sa", "hostPath", "/host", "1Ti", "64"):
        assert value not in rendered
    [pod] = [doc for doc in yaml.safe_load_all(rendered) if doc]
    assert pod["kind"] == "Pod"
    assert pod["metadata"]["namespace"] == KERNELS_NAMESPACE
    assert pod["metadata"]["name"] == "someone-1234"
    # How the provisioner finds the pod, and how the NetworkPolicies select it.
    assert pod["metadata"]["labels"]["kernel_id"] == "1234-abcd" and pod["metadata"]["labels"]["component"] == "kernel"
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "kernel-agent-kernel" and spec["automountServiceAccountToken"] is False
    assert spec["hostNetwork"] is False and spec["hostPID"] is False and spec["hostIPC"] is False
    assert spec["enableServiceLinks"] is False and spec["restartPolicy"] == "Never"
    _restricted_pod(spec)
    [container] = spec["containers"]
    assert container["image"] == "registry.example.com/kernel-agent-kernel:0.1.0"
    assert container["env"] == []  # the launcher appends its own environment; nothing is baked in
    assert container["workingDir"] == "/workspace"


def test_the_k8s_kernelspec_is_valid_for_gateway_provisioners() -> None:
    """Its provisioner is installed, its config keys are the provisioner's, its argv is the launcher's, its kernel
    class is ours, and every placeholder is one gateway_provisioners substitutes."""
    spec = _kernelspec()
    package = _gateway_provisioners()
    provisioner = spec["metadata"]["kernel_provisioner"]
    [entry] = importlib.metadata.entry_points(group="jupyter_client.kernel_provisioners",
                                              name=provisioner["provisioner_name"])
    assert entry.value == "gateway_provisioners.k8s:KubernetesProvisioner"
    # k8s.py needs the kubernetes client (the gateway image's gateway_provisioners[k8s]); its config traits are
    # its base class's.
    from gateway_provisioners.container import ContainerProvisionerBase

    traits = ContainerProvisionerBase.class_traits(config=True)
    assert set(provisioner["config"]) <= set(traits), set(provisioner["config"]) - set(traits)

    argv = spec["argv"]
    assert argv[0] == "python"  # run as given (gateway_provisioners does not substitute it): the gateway's python
    launcher = package / "kernel-launchers" / "kubernetes" / "scripts" / Path(argv[1]).name
    assert launcher.is_file()
    assert Path(argv[1]).parent == Path("/usr/local/share/jupyter/kernels/kernel-agent-k8s/scripts")
    options = {a for a in argv[2:] if a.startswith("--")}
    assert options <= _argparse_options(launcher), options - _argparse_options(launcher)
    stock = json.loads((package / "kernel-specs" / "container_python" / "kernel.json").read_text())
    placeholders = set(re.findall(r"\{(\w+)\}", " ".join(argv)))
    assert placeholders <= set(re.findall(r"\{(\w+)\}", " ".join(stock["argv"])))
    assert "transport_encryption" in placeholders and spec["metadata"]["supported_encryption"] == ["curve"]

    kernel_class = argv[argv.index("--kernel-class-name") + 1]
    assert kernel_class == KERNEL_CLASS
    from ipykernel.ipkernel import IPythonKernel

    from kernel_agent.kernel.agent_kernel import AgentKernel

    assert issubclass(AgentKernel, IPythonKernel)
    # The class name travels launcher -> pod environment -> bootstrap script -> the pod's launcher.
    assert 'os.environ["KERNEL_CLASS_NAME"] = kernel_class_name' in launcher.read_text()
    bootstrap = (package / "kernel-launchers" / "bootstrap" / "bootstrap-kernel.sh").read_text()
    assert "--kernel-class-name ${KERNEL_CLASS_NAME}" in bootstrap
    assert "--kernel-class-name" in _argparse_options(package / "kernel-launchers" / "python" / "scripts" /
                                                     "launch_ipykernel.py")


def _argparse_options(script: Path) -> set[str]:
    """The option strings a launcher script declares with argparse's add_argument."""
    found = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            found |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    return found


def test_the_image_sets_what_the_kernel_command_line_sets() -> None:
    """deploy/kubernetes/kernel-image/ipython_kernel_config.py holds kernel_agent.kernel's command-line settings."""
    from traitlets.config.loader import KVArgParseConfigLoader, PyFileConfigLoader

    from kernel_agent.kernel.__main__ import _KERNEL_CONFIG

    image = PyFileConfigLoader("ipython_kernel_config.py", path=str(DEPLOY / "kernel-image")).load_config()
    command_line = KVArgParseConfigLoader(argv=list(_KERNEL_CONFIG)).load_config()
    # Command-line values stay strings until a trait reads them: compared as the strings they are.
    as_text = {section: {name: str(value) for name, value in traits.items()} for section, traits in image.items()}
    assert as_text == {section: {name: str(value) for name, value in traits.items()}
                       for section, traits in command_line.items()}, (
        "kernel_agent/kernel/__main__.py changed the kernel's settings: make "
        "deploy/kubernetes/kernel-image/ipython_kernel_config.py set the same")


#: The gateway's end of a kernel pod's start, run by the gateway's python: its response manager (key pair and
#: response port) receives the pod launcher's encrypted connection information, which is printed for the test;
#: the pod runs until the test closes stdin.
_GATEWAY_END = textwrap.dedent("""
    import asyncio, json, os, signal, subprocess, sys, uuid
    if sys.argv[1] == "gateway_provisioners":
        from gateway_provisioners.response_manager import ResponseManager
    else:
        from enterprise_gateway.services.processproxies.processproxy import ResponseManager

    pod_python, launcher, kernel_class, home, encryption = sys.argv[2:7]

    async def main():
        responses = ResponseManager.instance()
        kernel_id = str(uuid.uuid4())
        responses.register_event(kernel_id)
        argv = [pod_python, launcher, "--kernel-id", kernel_id, "--port-range", "0..0", "--response-address",
                responses.response_address, "--public-key", responses.public_key, "--kernel-class-name", kernel_class]
        if encryption:
            argv += ["--transport-encryption", encryption]
        # The pod's environment: HOME and IPYTHONDIR on its /tmp, where the image's IPython config is.
        env = {"PATH": os.environ["PATH"], "HOME": home, "IPYTHONDIR": os.path.join(home, "ipython")}
        pod = subprocess.Popen(argv, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
        try:
            info = None
            while info is None:  # as the gateway waits: each call waits briefly for the launcher's response
                if pod.poll() is not None:
                    raise SystemExit("the pod's launcher ended: " + pod.stderr.read().decode()[-3000:])
                try:
                    info = await responses.get_connection_info(kernel_id)
                except asyncio.TimeoutError:
                    pass
            print(json.dumps(info, default=bytes.decode), flush=True)  # keys arrive as bytes
            await asyncio.to_thread(sys.stdin.read)
        finally:
            if pod.poll() is None:
                os.killpg(pod.pid, signal.SIGKILL)
            pod.wait()
            pod.stderr.close()

    asyncio.run(main())
""")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.timeout(900)  # the Enterprise Gateway venv is installed on first use
@pytest.mark.parametrize("gateway", ["gateway_provisioners", "enterprise_gateway_3"])
async def test_the_pod_command_starts_an_agent_kernel_for_the_gateway(gateway: str, tmp_path: Path) -> None:
    """What the kernel image runs (gateway_provisioners' pod launcher with our kernel class, assembled as its image
    bootstrap does) sends its connection to the gateway's response manager, gateway_provisioners' (with CurveZMQ)
    or Enterprise Gateway 3.3's, and serves an AgentKernel with the image's IPython settings applied."""
    _gateway_provisioners()  # named failure if it is missing
    from gateway_provisioners.cli.base_app import BaseApp

    BaseApp()._copy_launcher_files("python", str(tmp_path / "kernel-launchers" / "python"))
    launcher = tmp_path / "kernel-launchers" / "python" / "scripts" / "launch_ipykernel.py"
    profile = tmp_path / "home" / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    image_config = DEPLOY / "kernel-image" / "ipython_kernel_config.py"
    (profile / "ipython_kernel_config.py").write_text(image_config.read_text())
    if gateway == "gateway_provisioners":
        gateway_python, encryption, port = sys.executable, "required", "GP_RESPONSE_PORT"
    else:
        from .test_enterprise_gateway import gateway_python as enterprise_gateway_python

        gateway_python, encryption, port = str(enterprise_gateway_python()), "", "EG_RESPONSE_PORT"
    end = await asyncio.create_subprocess_exec(
        gateway_python, "-c", _GATEWAY_END, gateway, sys.executable, str(launcher), KERNEL_CLASS,
        str(tmp_path / "home"), encryption, env={**os.environ, port: str(_free_port())},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert end.stdin is not None and end.stdout is not None and end.stderr is not None
    client = AsyncKernelClient()
    try:
        line = await asyncio.wait_for(end.stdout.readline(), 300)
        assert line, (await end.stderr.read()).decode()[-4000:]
        info = json.loads(line)
        assert bool(info.get("curve_publickey")) is (encryption == "required")
        client.load_connection_info(info)
        client.start_channels()
        client.kernel_info()  # queued until the kernel binds its ports
        reply = await client.get_shell_msg(timeout=120)
        assert reply["content"]["implementation"] == "kernel-agent"
        said: list[str] = []
        await client.execute_interactive(
            "print(type(get_ipython().kernel).__name__, get_ipython().Completer.use_jedi, 'tools' in dir())",
            timeout=120, output_hook=lambda m: said.append(m["content"].get("text", "")))
        assert "".join(said) == "AgentKernel False True\n"
    finally:
        client.stop_channels()
        end.stdin.close()
        await asyncio.wait_for(end.wait(), 120)
        await end.stderr.read()
