from llamaops.platform.deploy.kube import current_namespace


def test_namespace_from_the_pod_then_the_kubeconfig_context_then_default(tmp_path, monkeypatch):
    in_pod = tmp_path / "namespace"
    in_pod.write_text("team-a\n")
    assert current_namespace(in_pod) == "team-a"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("""
apiVersion: v1
kind: Config
current-context: dev
contexts:
- name: dev
  context: {cluster: c, user: u, namespace: team-b}
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
""")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert current_namespace(tmp_path / "absent") == "team-b"
    kubeconfig.write_text(kubeconfig.read_text().replace(", namespace: team-b", ""))
    assert current_namespace(tmp_path / "absent") == "default"
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-file"))
    assert current_namespace(tmp_path / "absent") == "default"
