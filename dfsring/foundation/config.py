"""Node configuration: flags, DFSRING_* environment variables and a TOML file.

Precedence is flag > environment > file > default (CONTRACT.md, "Starting a node"). Every option
is declared once in OPTIONS so that --help, the environment names, the TOML keys and the README's
configuration table cannot drift apart.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfsring.foundation.tlsfiles import TlsFileError, check_config

ENV_PREFIX = "DFSRING_"
PEER_SIBLINGS_CARRIED = 64  # values of --max-value-size one peer body holds (internal_api)
DEFAULT_MAX_SIBLINGS = 20  # --max-siblings when 0 (automatic), see _max_siblings


class ConfigError(ValueError):
    """A configuration value we cannot start with; printed as one line, exit status 2."""


def _bool(raw: str | bool) -> bool:
    if isinstance(raw, bool):
        return raw
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def _seeds(raw: str | Sequence[str]) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return tuple(s.strip() for s in items if s.strip())


def _dials(raw: str | Sequence[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in _seeds(raw):
        addr, sep, via = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not ADDR=VIA")
        out.append((addr.strip(), via.strip()))
    return tuple(out)


def _optional_port(raw: str | int | None) -> int | None:
    return None if raw is None else int(raw)


def _positive_int(raw: str | int) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be >= 1")
    return value


def _positive_float(raw: str | float) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be > 0")
    return value


def _non_negative(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def check(raw: Any) -> Any:
        value = parse(raw)
        if value < 0:
            raise ValueError("must be >= 0")
        return value

    return check


def _chunk_size(raw: str | int) -> int:
    value = int(raw)
    if value & (value - 1) or not 64 << 10 <= value <= 4 << 20:
        raise ValueError("must be a power of two from 65536 (64 KiB) to 4194304 (4 MiB)")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return raw

    return parse


@dataclass(frozen=True)
class Option:
    name: str  # flag name without dashes, e.g. "data-dir"
    parse: Callable[[Any], Any]
    default: Any
    help: str
    metavar: str | None = None
    is_flag: bool = False

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.attr.upper()


OPTIONS: tuple[Option, ...] = (
    Option("data-dir", str, None, "directory for this node's data (required)", "DIR"),
    Option("host", str, "127.0.0.1", "address to listen on", "HOST"),
    Option("port", int, 7070, "TCP port to listen on", "PORT"),
    Option("advertise", str, None, "HOST:PORT peers use to reach this node's peer listener "
           "(default: host:peer-port)", "HOST:PORT"),
    Option("advertise-api", str, None, "HOST:PORT clients (and the CLI, through the members "
           "list) use to reach this node's client API (default: host:port)", "HOST:PORT"),
    Option("node-id", str, None, "stable node id (default: generated once, kept in the data dir)",
           "ID"),
    Option("seeds", _seeds, (), "comma-separated HOST:PORT of nodes to join through", "LIST"),
    Option("bootstrap-expect", _non_negative(int), 0,
           "found a new cluster only once this many seeds (this node included) answer and "
           "none knows a cluster; the lowest address founds. 0: the first seed founds once "
           "every seed answered without a cluster", "N"),
    Option("zone", str, "", "failure zone (rack, AZ) used to spread replicas", "ZONE"),
    Option("n", _positive_int, 3, "replicas per key (cluster default N)", "N"),
    Option("r", _positive_int, 2, "replies needed for a read (default R)", "R"),
    Option("w", _positive_int, 2, "durable acks needed for a write (default W)", "W"),
    Option("config", str, None, "TOML file with any of these options (keys as flag names)",
           "FILE.toml"),
    Option("log-json", _bool, False, "log JSON lines instead of human-readable text",
           is_flag=True),
    Option("log-level", _choice("debug", "info", "warning", "error"), "info",
           "minimum log level: debug, info, warning, error", "LEVEL"),
    Option("durability", _choice("fsync", "none"), "fsync",
           "fsync: a write is acknowledged only after fsync (group commit); none: no fsync "
           "(fast, loses recent writes on power loss)", "MODE"),
    Option("max-value-size", _positive_int, 1 << 20,
           "largest value the key/value API accepts, in bytes (larger: 413)", "BYTES"),
    Option("max-siblings", _non_negative(int), 0,
           "most concurrent versions a write may leave a key (past it: 409 too-many-siblings; "
           "resolve by writing back with the key's context); 0: automatic, min(20, 64 / N)",
           "K"),
    Option("request-timeout", _positive_float, 5.0,
           "seconds a coordinated read or write may take before 503", "SECONDS"),
    Option("max-connections", _non_negative(int), 0,
           "most connections the listener holds; at the cap a new one replaces the longest "
           "idle, or is refused with 503 if none is idle. 0: automatic, 3/4 of the open-file "
           "limit (raised to its hard limit at start), at most 50000; never above that", "N"),
    Option("max-connections-per-source", _positive_int, 1024,
           "most connections one source address holds (past it: 503); keep it above 128 "
           "(what one peer pools toward a node) times the nodes sharing an address", "N"),
    Option("header-timeout", _positive_float, 10.0,
           "seconds a request head (request line and headers) may take to arrive, from its "
           "first byte or the connection's start", "SECONDS"),
    Option("idle-timeout", _positive_float, 75.0,
           "seconds a kept-alive connection may wait for its next request", "SECONDS"),
    Option("min-upload-rate", _non_negative(int), 1024,
           "bytes/s a request body must average over each 10 s, or the connection is closed "
           "(not counted while the node itself paused reading); 0: no minimum", "BYTES"),
    Option("cluster-secret", str, "", "shared secret required on internal (node-to-node) calls",
           "SECRET"),
    Option("peer-port", _optional_port, None,
           "TCP port of the node-to-node listener; peer messages are never served on --port "
           "(default: --port + 100)", "PORT"),
    Option("insecure", _bool, False,
           "run without a cluster secret and without authentication (development only)",
           is_flag=True),
    Option("admin-access-key", str, "",
           "root access key, the same on every node: admin on the cluster, owner of every "
           "bucket", "KEY"),
    Option("admin-secret-key", str, "", "the root access key's secret", "SECRET"),
    Option("s3-port", _non_negative(int), 0,
           "TCP port of this node's S3 listener (path style on every node); 0: no S3 listener",
           "PORT"),
    Option("s3-region", str, "us-east-1", "region in AWS Signature V4 scopes (requests signed "
           "for another region are refused)", "REGION"),
    Option("s3-domain", str, "",
           "domain for virtual-host style S3 requests (BUCKET.DOMAIN); empty: path style only",
           "DOMAIN"),
    Option("s3-multipart-max-age", _positive_float, 7 * 86400.0,
           "seconds an unfinished multipart upload is kept before it is aborted and its parts "
           "collected", "SECONDS"),
    Option("metrics-auth", _bool, False, "require admin credentials on GET /metrics",
           is_flag=True),
    Option("cors-origins", _seeds, (),
           "browser origins allowed by CORS on every bucket without rules of its own: '*', "
           "https://host[:port] or https://*.domain, comma separated (default: none, no CORS)",
           "LIST"),
    Option("cors-methods", _seeds, ("GET", "HEAD", "PUT", "DELETE"),
           "methods the --cors-origins may use", "LIST"),
    Option("cors-headers", _seeds, ("authorization", "content-type", "dfs-context",
                                    "x-api-key", "x-amz-content-sha256", "x-amz-date"),
           "request headers the --cors-origins may send ('*': any)", "LIST"),
    Option("cors-max-age", _non_negative(int), 600,
           "seconds a browser may cache a CORS preflight answer", "SECONDS"),
    Option("key-rate", _non_negative(float), 2000.0,
           "requests/s per access key on this node (root and admin keys too; anonymous "
           "requests are not counted); 0: unlimited", "RATE"),
    Option("key-burst", _non_negative(float), 4000.0,
           "requests a key may make at once above --key-rate (0: as --key-rate)", "N"),
    Option("key-bandwidth", _non_negative(int), 1 << 30,
           "bytes/s per access key (request bodies and read answers) on this node, with a "
           "burst of one second; 0: unlimited", "BYTES"),
    Option("tls-cert", str, "", "PEM certificate chain: HTTPS on client listeners, and this "
           "node's certificate toward its peers", "FILE"),
    Option("tls-key", str, "", "PEM private key of --tls-cert", "FILE"),
    Option("tls-ca", str, "", "PEM CA certificate(s): peers talk mutual TLS and must present a "
           "certificate this CA signed", "FILE"),
    Option("partitions", _positive_int, 1024,
           "number of ring partitions, a power of two (must match across the cluster)", "P"),
    Option("gossip-interval", _positive_float, 0.5,
           "seconds between gossip rounds (each one is also this node's heartbeat)", "SECONDS"),
    Option("gossip-fanout", _positive_int, 2, "peers contacted per gossip round", "K"),
    Option("phi-threshold", _positive_float, 8.0,
           "phi accrual level at which a silent peer is marked down", "PHI"),
    Option("transfer-rate", _positive_int, 64 << 20,
           "bytes/s this node fetches during ownership transfers (all streams together)",
           "BYTES"),
    Option("transfer-streams", _positive_int, 16,
           "partitions fetched in parallel during ownership transfers", "K"),
    Option("hint-max-bytes", _positive_int, 256 << 20,
           "most bytes of hints kept for one down node; further writes for it go to the next "
           "fallback", "BYTES"),
    Option("hint-max-age", _positive_float, 10800.0,
           "seconds a hint is kept before it is dropped and left to anti-entropy", "SECONDS"),
    Option("hint-rate", _positive_int, 16 << 20,
           "bytes/s this node delivers hints at (all targets together)", "BYTES"),
    Option("ae-interval", _positive_float, 1.0,
           "seconds between anti-entropy rounds that found nothing to repair (jittered)",
           "SECONDS"),
    Option("ae-rate", _positive_int, 16 << 20,
           "bytes/s of records anti-entropy moves (both directions together); file chunks "
           "copied to owners lacking them have a budget of their own of the same size", "BYTES"),
    Option("scrub-interval", _positive_float, 3600.0,
           "seconds between scrub passes (re-reading every stored value, and every file "
           "chunk in a pass of its own)", "SECONDS"),
    Option("scrub-rate", _positive_int, 8 << 20,
           "bytes/s a scrub pass reads (values and chunks: each at this rate)", "BYTES"),
    Option("tombstone-grace", _positive_float, 86400.0,
           "seconds a tombstone is kept at least (and never less than --hint-max-age) before "
           "it may be removed", "SECONDS"),
    Option("dial", _dials, (),
           "ADDR=VIA,...: reach the peer advertised as ADDR through VIA (a fault proxy, a "
           "tunnel); gossip never overrides it", "LIST"),
    # files (dfsring.files)
    Option("chunk-size", _chunk_size, 2 << 20,
           "average size of the content-defined chunks files are cut into, in bytes (a power "
           "of two; chunks are 1/4 to 4 times it)", "BYTES"),
    Option("file-retention-versions", _non_negative(int), 10,
           "newest versions of each file kept; older ones are pruned unless "
           "--file-retention-days keeps them; 0: no limit by count", "N"),
    Option("file-retention-days", _non_negative(float), 0.0,
           "days every version of a file is kept; 0: no limit by age (both 0: every version "
           "is kept; the newest always is)", "DAYS"),
    Option("gc-grace", _positive_float, 3600.0,
           "seconds an unreferenced chunk is kept before garbage collection may delete it "
           "(uploads in flight keep theirs alive; keep it at least 3 x --request-timeout)",
           "SECONDS"),
    Option("gc-interval", _positive_float, 300.0,
           "seconds between garbage collection rounds of file chunks (jittered)", "SECONDS"),
    Option("chunk-sync-interval", _positive_float, 30.0,
           "seconds between passes that copy this node's file chunks to owners lacking them "
           "and drop the copies it holds without owning them (jittered)", "SECONDS"),
)
_BY_ATTR = {o.attr: o for o in OPTIONS}


@dataclass(frozen=True)
class NodeConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 7070
    advertise: str = ""
    advertise_api: str = ""
    node_id: str | None = None
    seeds: tuple[str, ...] = ()
    bootstrap_expect: int = 0
    zone: str = ""
    n: int = 3
    r: int = 2
    w: int = 2
    config: str | None = None
    log_json: bool = False
    log_level: str = "info"
    durability: str = "fsync"
    max_value_size: int = 1 << 20
    max_siblings: int = 0
    request_timeout: float = 5.0
    max_connections: int = 0
    max_connections_per_source: int = 1024
    header_timeout: float = 10.0
    idle_timeout: float = 75.0
    min_upload_rate: int = 1024
    cluster_secret: str = field(default="", repr=False)
    peer_port: int = 7170
    insecure: bool = False
    admin_access_key: str = ""
    admin_secret_key: str = field(default="", repr=False)
    s3_port: int = 0
    s3_region: str = "us-east-1"
    s3_domain: str = ""
    s3_multipart_max_age: float = 7 * 86400.0
    metrics_auth: bool = False
    cors_origins: tuple[str, ...] = ()
    cors_methods: tuple[str, ...] = ("GET", "HEAD", "PUT", "DELETE")
    cors_headers: tuple[str, ...] = ("authorization", "content-type", "dfs-context",
                                     "x-api-key", "x-amz-content-sha256", "x-amz-date")
    cors_max_age: int = 600
    key_rate: float = 2000.0
    key_burst: float = 4000.0
    key_bandwidth: int = 1 << 30
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    partitions: int = 1024
    gossip_interval: float = 0.5
    gossip_fanout: int = 2
    phi_threshold: float = 8.0
    transfer_rate: int = 64 << 20
    transfer_streams: int = 16
    hint_max_bytes: int = 256 << 20
    hint_max_age: float = 10800.0
    hint_rate: int = 16 << 20
    ae_interval: float = 1.0
    ae_rate: int = 16 << 20
    scrub_interval: float = 3600.0
    scrub_rate: int = 8 << 20
    tombstone_grace: float = 86400.0
    dial: tuple[tuple[str, str], ...] = ()
    chunk_size: int = 2 << 20
    file_retention_versions: int = 10
    file_retention_days: float = 0.0
    gc_grace: float = 3600.0
    gc_interval: float = 300.0
    chunk_sync_interval: float = 30.0

    @property
    def partition_bits(self) -> int:
        return self.partitions.bit_length() - 1

    @property
    def durable(self) -> bool:
        return self.durability == "fsync"


def build_parser(prog: str = "python -m dfsring.node") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run one dfsring node. Every option can also be set through the "
        f"environment ({ENV_PREFIX}<OPTION>, e.g. DFSRING_SEEDS) or a TOML file (--config); "
        "precedence is flag > environment > file > default.",
    )
    for opt in OPTIONS:
        env_help = f" [env {opt.env}]"
        if opt.is_flag:
            parser.add_argument(f"--{opt.name}", dest=opt.attr, action="store_const",
                                const=True, default=None, help=opt.help + env_help)
        else:
            default = "" if opt.default in (None, "", ()) else f" (default {opt.default})"
            parser.add_argument(f"--{opt.name}", dest=opt.attr, default=None,
                                metavar=opt.metavar, help=opt.help + default + env_help)
    return parser


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    out: dict[str, Any] = {}
    for key, value in data.items():
        attr = key.replace("-", "_")
        if attr not in _BY_ATTR or attr == "config":
            raise ConfigError(f"config file {path}: unknown option {key!r}")
        out[attr] = value
    return out


def load_config(argv: Sequence[str] | None = None,
                environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Resolve the layered configuration; raise ConfigError with one clear line on bad input."""
    environ = os.environ if environ is None else environ
    args = vars(build_parser().parse_args(argv))
    config_path = args.get("config") or environ.get(_BY_ATTR["config"].env)
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if config_path:
        layers.append((f"config file {config_path}", _read_toml(config_path)))
    env_layer = {o.attr: environ[o.env] for o in OPTIONS if o.env in environ}
    layers.append(("environment", env_layer))
    layers.append(("command line", {k: v for k, v in args.items() if v is not None}))
    values: dict[str, Any] = {o.attr: o.default for o in OPTIONS}
    for source, layer in layers:
        for attr, raw in layer.items():
            values[attr] = _parse(_BY_ATTR[attr], raw, source)
    values["config"] = config_path
    return _validate(values)


def _parse(opt: Option, raw: Any, source: str) -> Any:
    try:
        return opt.parse(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--{opt.name} from {source}: {exc}") from exc


def _validate(values: dict[str, Any]) -> NodeConfig:
    if not values["data_dir"]:
        raise ConfigError("--data-dir is required (or DFSRING_DATA_DIR / data-dir in the config)")
    if not 0 < values["port"] < 65536:
        raise ConfigError(f"--port {values['port']} is not a TCP port")
    p = values["partitions"]
    if p & (p - 1) or not 2 <= p <= 65536:
        raise ConfigError(f"--partitions {p} must be a power of two between 2 and 65536")
    for knob in ("r", "w"):
        if values[knob] > values["n"]:
            raise ConfigError(f"--{knob} {values[knob]} cannot exceed --n {values['n']}")
    values["max_siblings"] = _max_siblings(values["max_siblings"], values["n"])
    if values["peer_port"] is None:
        values["peer_port"] = values["port"] + 100
    if not 0 < values["peer_port"] < 65536 or values["peer_port"] == values["port"]:
        raise ConfigError(f"--peer-port {values['peer_port']} must be a TCP port other than "
                          f"--port {values['port']}")
    s3 = values["s3_port"]
    if s3 and (s3 >= 65536 or s3 in (values["port"], values["peer_port"])):
        raise ConfigError(f"--s3-port {s3} must be a TCP port other than --port and --peer-port")
    for knob, port in (("advertise", values["peer_port"]), ("advertise_api", values["port"])):
        if not values[knob]:
            if values["host"] in ("0.0.0.0", "::"):
                raise ConfigError(f"--{knob.replace('_', '-')} is required when listening on "
                                  "all interfaces")
            values[knob] = f"{values['host']}:{port}"
    for addr in (values["advertise"], values["advertise_api"], *values["seeds"],
                 *(a for pair in values["dial"] for a in pair)):
        _check_address(addr)
    try:
        check_config(values["tls_cert"], values["tls_key"], values["tls_ca"])
    except TlsFileError as exc:
        raise ConfigError(str(exc)) from exc
    values["data_dir"] = Path(values["data_dir"])
    return NodeConfig(**values)


def _max_siblings(limit: int, n: int) -> int:
    """The sibling limit, checked against what one peer message carries.

    A key's state travels whole in one message (replication, read repair, hints, transfers),
    and a peer accepts at most PEER_SIBLINGS_CARRIED values of --max-value-size in one body
    (dfsring.http.internal_api). Each coordinating owner keeps at most `limit` siblings, and
    the join of N owners that took writes apart (a partition) can hold N times that, so
    limit x N must not exceed what a peer accepts. The default, 20, is under Riak's warning
    level (25) and leaves room: 60 of 64 with N=3.
    """
    if limit == 0:
        return max(1, min(DEFAULT_MAX_SIBLINGS, PEER_SIBLINGS_CARRIED // n))
    if limit * n > PEER_SIBLINGS_CARRIED:
        raise ConfigError(f"--max-siblings {limit} x --n {n} exceeds the {PEER_SIBLINGS_CARRIED} "
                          "values one peer message carries; use at most "
                          f"{PEER_SIBLINGS_CARRIED // n}")
    return limit


def _check_address(addr: str) -> None:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{addr!r} is not a HOST:PORT address")


def options_table() -> str:
    """The README's configuration table, generated so it matches --help."""
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for o in OPTIONS:
        shown = ",".join(o.default) if isinstance(o.default, tuple) else o.default
        default = "" if o.default in (None, "", ()) else f"`{shown}`"
        rows.append(f"| `--{o.name}` | `{o.env}` | {default} | {o.help} |")
    return "\n".join(rows)
