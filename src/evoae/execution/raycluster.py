"""Joining a Ray cluster safely: a handshake before ``ray.init``, loopback kept loopback.

``ray.init`` on a bad address can block for minutes in Ray's C++ client, deaf to
SIGTERM: an open port that is not Ray, or a cluster that listens on 127.0.0.1 only while
Ray rewrites ``127.0.0.1`` to the machine's network address. So evoae first asks the
head's GCS, over gRPC with a deadline, for its cluster id and its nodes; a loopback
address pins the driver's node IP to it, and one of the nodes must run there (a driver
attaches to a local raylet). While ``ray.init`` runs, a watchdog
thread ends the process on SIGTERM / SIGINT if the main thread cannot.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from evoae.errors import EvoaeError

#: Seconds the handshake with a cluster may take.
HANDSHAKE_S = 5.0
#: The driver's node IP when the user names ``localhost``.
LOOPBACK = "127.0.0.1"
#: Seconds the main thread has to act on SIGTERM / SIGINT during ``ray.init``.
SIGNAL_GRACE_S = 3.0


@dataclass(frozen=True)
class Address:
    """A parsed ``--ray-address``: ``client`` for ``ray://`` (Ray Client) addresses."""

    host: str
    port: int
    client: bool = False

    @property
    def node_ip(self) -> str | None:
        """The driver's node IP for a loopback address: that address (localhost: 127.0.0.1)."""
        if not is_loopback(self.host):
            return None
        return LOOPBACK if self.host.lower() == "localhost" else self.host

    def target(self) -> str:
        """``host:port`` as Ray is given it (``localhost`` spelled 127.0.0.1)."""
        host = self.node_ip or self.host
        return f"{'[' + host + ']' if ':' in host else host}:{self.port}"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_address(address: str) -> Address | None:
    """``HOST:PORT`` or ``ray://HOST:PORT``; None for ``auto`` and ``local``."""
    if address in ("auto", "local"):
        return None
    client = address.startswith("ray://")
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not host or not 0 < int(port) < 65536:
        raise EvoaeError(
            f"--ray-address {address!r} is not auto, HOST:PORT or ray://HOST:PORT: check it"
        )
    return Address(host, int(port), client)


def resolve_auto() -> str:
    """The address of the cluster ``ray start`` last started on this machine."""
    from ray._private import services

    try:
        found = services.get_ray_address_from_environment("auto", None)
    except ConnectionError:
        found = None
    if not found or found == "auto":
        raise EvoaeError(
            "--ray-address auto found no Ray cluster started on this machine: start one "
            "(ray start --head --node-ip-address=127.0.0.1) or give its HOST:PORT"
        )
    return str(found)


def _why(e: grpc.RpcError, timeout: float) -> str:
    """The reason of a failed handshake, in a few words."""
    code = e.code() if hasattr(e, "code") else None
    details = " ".join(str(e.details() if hasattr(e, "details") else e).split())
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no Ray answer within {timeout:g} s"
    low = details.lower()
    if "refused" in low:
        return "connection refused"
    if (
        "http/2" in low
        or "frame" in low
        or "unimplemented" in low
        or (code == grpc.StatusCode.UNIMPLEMENTED)
    ):
        return "the port answers, but not as a Ray cluster"
    if "resolve" in low or "dns" in low:
        return "unknown host"
    return details[:160] or str(code)


def _unreachable(address: str, why: str) -> EvoaeError:
    return EvoaeError(
        f"cannot reach the Ray cluster at {address} ({why}): check --ray-address (the "
        "head's HOST:PORT, 6379 by default) and that the cluster is running (ray start --head)"
    )


def gcs_nodes(target: str, timeout: float = HANDSHAKE_S) -> list[tuple[str, bool]]:
    """``(node IP, alive)`` of every node the GCS at ``target`` knows; raises grpc.RpcError.

    Two real RPCs with a deadline: the cluster id (what ``ray.init`` asks first) and the
    node table. A port that is not a Ray GCS fails the first.
    """
    from ray.core.generated import gcs_service_pb2 as pb
    from ray.core.generated import gcs_service_pb2_grpc as rpc

    with grpc.insecure_channel(target) as channel:
        stub = rpc.NodeInfoGcsServiceStub(channel)
        # .future().result() waits in short slices, so signals are still handled.
        stub.GetClusterId.future(pb.GetClusterIdRequest(), timeout=timeout).result()
        reply = stub.GetAllNodeInfo.future(pb.GetAllNodeInfoRequest(), timeout=timeout).result()
    alive = pb.GcsNodeInfo.GcsNodeState.ALIVE if hasattr(pb, "GcsNodeInfo") else 0
    return [(n.node_manager_address, n.state == alive) for n in reply.node_info_list]


def gcs_alive(target: str, timeout: float = 2.0) -> bool:
    """True when the GCS at ``target`` answers within ``timeout`` seconds."""
    try:
        gcs_nodes(target, timeout)
    except grpc.RpcError:
        return False
    return True


def _client_ping(address: Address, original: str, timeout: float) -> None:
    from ray.core.generated import ray_client_pb2 as pb
    from ray.core.generated import ray_client_pb2_grpc as rpc

    request = pb.ClusterInfoRequest(type=pb.ClusterInfoType.PING)
    try:
        with grpc.insecure_channel(address.target()) as channel:
            rpc.RayletDriverStub(channel).ClusterInfo.future(request, timeout=timeout).result()
    except grpc.RpcError as e:
        raise _unreachable(original, _why(e, timeout)) from None


def check_cluster(address: str, timeout: float = HANDSHAKE_S) -> tuple[str, str | None]:
    """Handshake with the cluster at ``address``; ``(address for ray.init, node IP)``.

    The node IP is the loopback address given (None otherwise: Ray's choice).
    Raises :class:`EvoaeError` when nothing answers as Ray within ``timeout`` seconds,
    or, for a loopback address, when no live node runs at it to attach the driver to.
    """
    original = address
    if address == "auto":
        address = resolve_auto()
    parsed = parse_address(address)
    if parsed is None:
        return address, None
    if parsed.client:
        _client_ping(parsed, original, timeout)
        return f"ray://{parsed.target()}", None
    target = parsed.target()
    try:
        nodes = gcs_nodes(target, timeout)
    except grpc.RpcError as e:
        raise _unreachable(original, _why(e, timeout)) from None
    # Only a pinned node IP is known for sure; elsewhere Ray picks the driver's node (a
    # machine with several addresses may have registered under any of them).
    node_ip = parsed.node_ip
    if node_ip is not None and not any(alive and ip == node_ip for ip, alive in nodes):
        ips = sorted({ip for ip, alive in nodes if alive}) or ["none alive"]
        raise EvoaeError(
            f"the Ray cluster at {original} has no node on this machine at {node_ip} (its "
            f"nodes: {', '.join(ips)}): attach one with ray start --address={target} "
            f"--node-ip-address={node_ip}, or run evoae on a node of the cluster"
        )
    return target, parsed.node_ip


@contextlib.contextmanager
def loopback_pinned(enabled: bool) -> Iterator[None]:
    """Keep Ray from rewriting 127.0.0.1 to this machine's network address.

    ``ray.init`` passes both the GCS address and ``_node_ip_address`` through
    ``resolve_ip_for_localhost``, which swaps a loopback host for the machine's
    outward address unless Ray runs as a single-machine instance; a cluster that
    listens on loopback only is then never found.
    """
    if not enabled:
        yield
        return
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


@contextlib.contextmanager
def backend_quiet(enabled: bool) -> Iterator[None]:
    """Ray's C++ client in this process logs only fatal errors (read once, at ``ray.init``).

    Without it, a head that dies prints its client's retries and failed pushes on stderr.
    """
    if not enabled:
        yield
        return
    key = "RAY_BACKEND_LOG_LEVEL"
    before = os.environ.get(key)
    os.environ[key] = "fatal"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def shutdown_bounded(seconds: float) -> None:
    """``ray.shutdown()`` after the cluster died: it waits on the dead head for long.

    It runs in a daemon thread for at most ``seconds``; if it has not returned by then,
    Ray's own exit hook (a second shutdown) is removed so the process can end.
    """
    import ray
    from ray._private import worker as ray_worker

    thread = threading.Thread(target=ray.shutdown, name="evoae-ray-shutdown", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        atexit.unregister(ray_worker.shutdown)


@contextlib.contextmanager
def signals_end_process() -> Iterator[None]:
    """While the block runs, SIGTERM / SIGINT end the process even if Python cannot act.

    Python runs signal handlers only between bytecodes; a main thread blocked inside
    Ray's C++ client never gets there. The C-level handler still writes the signal
    number to a wakeup pipe: a watchdog thread reads it and, when the block has not
    ended ``SIGNAL_GRACE_S`` seconds later, prints evoae's line and exits.
    SIGTERM's Python handler is restored afterwards (``ray.init`` replaces it).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    r, w = os.pipe()
    os.set_blocking(w, False)
    done = threading.Event()
    try:
        old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except ValueError:  # not in the main interpreter
        os.close(r)
        os.close(w)
        yield
        return

    def watch() -> None:
        while not done.is_set():
            data = os.read(r, 64)
            if not data or done.is_set():
                return
            signums = set(data) & {signal.SIGTERM, signal.SIGINT}
            if signums and not done.wait(SIGNAL_GRACE_S):
                term = signal.SIGTERM in signums
                what = "terminated" if term else "interrupted"
                os.write(2, f"evoae: {what} while joining the Ray cluster\n".encode())
                os._exit(143 if term else 130)

    watcher = threading.Thread(target=watch, name="evoae-ray-signals", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        signal.set_wakeup_fd(old_fd)
        os.write(w, b"\0")
        watcher.join(1.0)
        os.close(w)
        os.close(r)
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
        sys.stderr.flush()
