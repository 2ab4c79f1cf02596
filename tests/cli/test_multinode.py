"""Data parallel over two "nodes": two msrun launchers (--node_rank 0 and 1, one worker each, the master on
127.0.0.1) form one cluster, train, and write one set of outputs; a node that never joins ends the run after
msrun's --cluster_time_out with one line from finetune.py, not a hang."""
import os
import re
import signal
import subprocess
import sys

from conftest import ROOT, TINY_TRAIN_ARGS, free_port

RUN = [os.path.join(ROOT, "finetune.py"), *TINY_TRAIN_ARGS, "--opt", "momentum", "--distribute", "True",
       "--epoch_size", "1", "--mode", "1", "--model", "resnet18"]


def msrun(node_rank, port, log_dir, args, timeout_s, env):
    return subprocess.Popen(["msrun", "--worker_num=2", "--local_worker_num=1", f"--node_rank={node_rank}",
                             "--master_addr=127.0.0.1", f"--master_port={port}", f"--log_dir={log_dir}", "--join=True",
                             f"--cluster_time_out={timeout_s}", *args], cwd=os.path.dirname(log_dir), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(node, timeout, log_dir):
    """``node``'s output once it ends; past ``timeout`` s, stop it and everything it started, then fail with its
    logs. (msrun starts each worker in a session of its own: its SIGINT handler is what ends them all.)"""
    try:
        return node.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        node.send_signal(signal.SIGINT)
        try:
            output = node.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            output = node.communicate()[0]
        logs = {name: open(os.path.join(log_dir, name)).read()[-3000:] for name in sorted(os.listdir(log_dir))}
        raise AssertionError(f"msrun still running after {timeout} s; output: {output[-3000:]}; logs: {logs}")


def launcher_env(tmp_path, second_machine=False):
    """msrun starts ``python`` from PATH. On two machines, node 1's msrun sees that the master's address is not
    its own and starts no scheduler; on this one machine it would start a second scheduler on the same port
    (and fail), so node 1's launcher is given an ``ip`` that reports no local address, as on another machine."""
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
    if second_machine:
        stub = tmp_path / "other_machine"
        stub.mkdir()
        (stub / "ip").write_text("#!/bin/sh\necho '[]'\n")
        (stub / "ip").chmod(0o755)
        path = str(stub) + os.pathsep + path
    return dict(os.environ, GLOG_v="3", PATH=path)


def test_two_nodes_train_one_run(tiny_aircraft, tmp_path):
    port, out = free_port(), tmp_path / "out"
    args = [*RUN, "--data_dir", tiny_aircraft, "--ckpt_save_dir", str(out)]
    nodes = [msrun(rank, port, str(tmp_path / f"node{rank}"), args, 300, launcher_env(tmp_path, rank == 1))
             for rank in (0, 1)]
    outputs = [finish(node, 600, str(tmp_path / f"node{rank}")) for rank, node in zip((0, 1), nodes)]
    logs = [open(tmp_path / f"node{r}" / f"worker_{r}.log").read() for r in (0, 1)]
    assert [node.returncode for node in nodes] == [0, 0], (outputs, logs)
    assert not os.path.exists(tmp_path / "node1" / "scheduler.log")       # one scheduler: node 0's
    digests = [re.search(r"rank (\d): final weights digest (\w+)", log).groups() for log in logs]
    assert [d[0] for d in digests] == ["0", "1"] and digests[0][1] == digests[1][1]   # one model
    assert "steps/epoch" in logs[0] and "steps/epoch" not in logs[1]    # rank 0 alone reports and writes
    assert re.search(r"\b2 steps/epoch", logs[0]), logs[0]           # sharded: 40 images / 2 nodes / batch 8
    assert sorted(os.listdir(out)) == sorted(
        [".run.lock", "summary.json", "config.yaml", "resume.ckpt", "results.csv", "results.txt", "training_curves.png",
         "resnet18-1.ckpt", "resnet18_best.ckpt", "resnet18_last.ckpt"])
    assert not [p for p in os.listdir(tmp_path) if p.startswith("out_")]   # nothing written beside it


def test_a_node_that_never_joins_ends_with_one_line(tiny_aircraft, tmp_path):
    out = tmp_path / "out"
    node = msrun(0, free_port(), str(tmp_path / "node0"), [*RUN, "--data_dir", tiny_aircraft, "--ckpt_save_dir",
                                                            str(out)], 10, launcher_env(tmp_path))
    finish(node, 300, str(tmp_path / "node0"))                        # bounded: cluster_time_out, then exit
    assert node.returncode != 0
    log = open(tmp_path / "node0" / "worker_0.log").read()
    assert "Traceback" not in log, log
    ours = [line for line in log.splitlines() if line.startswith("error:")]
    assert len(ours) == 1 and "data-parallel cluster did not form (2 workers expected at 127.0.0.1:" in ours[0], log
    assert not os.path.exists(out)
