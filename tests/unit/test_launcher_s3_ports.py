"""LocalCluster(s3=True) gives every node an S3 port (issue 19): the ports of a cluster never
collide, the S3 URL follows the client API's scheme, and a node without S3 has no --s3-port.
Pure: the specs are built, no process is started."""

from __future__ import annotations

from pathlib import Path

from dfsring.cli.launcher import LocalCluster, NodeSpec, TlsFiles


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_s3_cluster_gives_every_node_its_own_s3_port_and_url(tmp_path: Path) -> None:
    cluster = LocalCluster(3, tmp_path, s3=True)
    ports = [p for node in cluster for p in (node.spec.port, node.spec.s3_port,
                                              int(node.peer_address.rsplit(":", 1)[1]))]
    assert len(set(ports)) == 9, f"client, peer and S3 ports of 3 nodes must differ: {ports}"
    for node in cluster:
        argv = node.spec.argv()
        assert _flag(argv, "--s3-port") == str(node.spec.s3_port), f"argv {argv} has --s3-port"
        assert node.s3_url == f"http://127.0.0.1:{node.spec.s3_port}", "S3 URL is http"
    assert cluster.s3_urls == [node.s3_url for node in cluster], "s3_urls lists every node"


def test_cluster_without_s3_passes_no_s3_port(tmp_path: Path) -> None:
    cluster = LocalCluster(2, tmp_path)
    assert cluster.s3_urls == [], "no S3 endpoint when s3=False"
    for node in cluster:
        assert node.s3_url is None and "--s3-port" not in node.spec.argv(), node.spec.argv()


def test_explicit_base_port_puts_s3_ports_200_above_unless_told(tmp_path: Path) -> None:
    default = LocalCluster(2, tmp_path / "a", base_port=20000, s3=True)
    assert [n.spec.s3_port for n in default] == [20200, 20201], "S3 ports default to +200"
    told = LocalCluster(2, tmp_path / "b", base_port=20000, s3=True, s3_base_port=21000)
    assert [n.spec.s3_port for n in told] == [21000, 21001], "s3_base_port is honoured"


def test_s3_url_is_https_when_the_node_serves_tls(tmp_path: Path) -> None:
    tls = TlsFiles(tmp_path / "c.pem", tmp_path / "c.key", tmp_path / "ca.pem")
    spec = NodeSpec(index=1, node_id="node1", host="::1", port=9000, data_dir=tmp_path,
                    log_path=tmp_path / "log", s3_port=9300, tls=tls)
    assert spec.s3_url == "https://[::1]:9300", f"TLS S3 URL of an IPv6 node: {spec.s3_url}"


def test_added_node_of_an_s3_cluster_serves_s3_too(tmp_path: Path) -> None:
    cluster = LocalCluster(1, tmp_path, s3=True)
    node = cluster.add_node(start=False)
    assert node.spec.s3_port is not None and node.spec.s3_port not in (
        node.spec.port, node.spec.peer_port), f"added node's S3 port {node.spec.s3_port}"
