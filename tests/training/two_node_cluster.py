"""A two-node Ray cluster on 127.0.0.1, held by this process until its stdin closes:
``python tests/training/two_node_cluster.py TEMP_DIR`` prints the head's address.

Two nodes (two raylets, two object stores; 1 CPU each, the second with the resource
``second_node``) through ``ray.cluster_utils.Cluster``, because ``ray start --address=...``
cannot join a loopback head: with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (which keeps Ray on
127.0.0.1) the CLI refuses to add a node, and with it set to 1 the CLI replaces 127.0.0.1 by
the machine's interface address and never reaches the head. Ray writes its address file under
TEMP_DIR (RAY_TMPDIR), not in /tmp/ray, so no other Ray on the machine is redirected to it.
The caller stops every process by PID (robustagg.backends.ray_cluster.stop_head(TEMP_DIR)).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from robustagg.backends.ray_cluster import RAY_ENV  # noqa: E402

if __name__ == "__main__":
    temp = sys.argv[1]
    os.environ.update(RAY_ENV)
    os.environ["RAY_TMPDIR"] = temp
    os.makedirs(os.path.join(temp, "ray"), exist_ok=True)
    from ray.cluster_utils import Cluster

    store = 100 * 2 ** 20
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": store, "include_dashboard": False,
        "temp_dir": temp, "node_ip_address": "127.0.0.1"})
    cluster.add_node(num_cpus=1, object_store_memory=store, resources={"second_node": 1},
                     node_ip_address="127.0.0.1")
    print(cluster.address, flush=True)
    sys.stdin.read()
