"""--master, --attributes, --hostname: values as mesos-agent takes them, one clear line (exit 2)
for a bad one; and what the agent does with a master that is not there, or a message that is
not the master's."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

from corral.agent.flags import FlagError, parse
from tests.mesos.mesoskit import until


def test_master_and_attributes_as_mesos_agent_takes_them(tmp_path):
    (tmp_path / "master").write_text("10.0.0.1:5050\n")
    flags = parse([f"--master=file://{tmp_path / 'master'}", "--attributes=rack:r1;level:3;zone:{a,b};slots:[1-4]",
                   "--hostname=h1"], {})
    assert flags.master == "10.0.0.1:5050" and flags.hostname == "h1"
    assert flags.attributes == [
        {"name": "rack", "type": "TEXT", "text": {"value": "r1"}},
        {"name": "level", "type": "SCALAR", "scalar": {"value": 3.0}},
        {"name": "zone", "type": "SET", "set": {"item": ["a", "b"]}},
        {"name": "slots", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 4}]}}]
    assert parse(["--master=localhost:5050"], {}).master == "localhost:5050"


@pytest.mark.parametrize("flag, says", [
    ("--master=zk://127.0.0.1:2181/mesos", "zk:// (ZooKeeper) masters are not supported yet"),
    ("--master=127.0.0.1", "is not a master's HOST:PORT"),
    ("--master=127.0.0.1:99999", "is not a master's HOST:PORT"),
    ("--master=file:///nonexistent/master", "cannot be read"),
    ("--attributes=rack", "'rack' is not name:value"),
    ("--attributes=slots:[x]", "ranges are [BEGIN-END,...]"),
])
def test_a_bad_value_is_one_line_naming_it(flag, says):
    with pytest.raises(FlagError, match=None) as e:
        parse([flag], {})
    assert says in str(e.value) and str(e.value).startswith(flag.split("=")[0])
    done = subprocess.run([sys.executable, "-m", "corral.agent.main", flag], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and says in done.stderr


def test_an_agent_whose_master_is_not_there_serves_its_api_and_keeps_trying(corral):
    from tests.agent.agentkit import AgentProcess, free_port_block
    agent = AgentProcess([f"--master=127.0.0.1:{free_port_block(1)}", f"--work_dir={corral.work_dir}",
                          f"--runtime_dir={corral.runtime_dir}", f"--cgroups_root={corral.cgroups_root}",
                          "--resources=cpus:1;mem:256;disk:64;ports:[31000-31001]"])
    try:
        assert agent.call({"type": "GET_HEALTH"}) == (200, {"type": "GET_HEALTH", "get_health": {"healthy": True}})
    finally:
        assert agent.stop() == 0


def test_a_message_not_from_the_master_is_dropped(corral, mesos_master):
    """A RunTaskMessage that names another sender than the master runs nothing."""
    from tests.agent.agentkit import AgentProcess

    from corral.agent import messages as m
    master = mesos_master()
    agent = AgentProcess([f"--master={master.address}", f"--work_dir={corral.work_dir}",
                          f"--runtime_dir={corral.runtime_dir}", f"--cgroups_root={corral.cgroups_root}",
                          "--resources=cpus:1;mem:256;disk:64;ports:[31000-31001]"])
    try:
        forged = m.RunTaskMessage(framework=m.FrameworkInfo(user="root", name="x", id=m.FrameworkID(value="f1")),
                                  task=m.TaskInfo(name="t", task_id=m.TaskID(value="t"),
                                                  command=m.CommandInfo(value="true")))

        def send(sender: str) -> None:
            request = urllib.request.Request(f"http://127.0.0.1:{agent.port}/slave(1)/mesos.internal.RunTaskMessage",
                                             data=forged.SerializeToString(), headers={"Libprocess-From": sender})
            with urllib.request.urlopen(request, timeout=10) as r:
                assert r.status == 202

        def containers() -> list:
            return agent.state()["containers"]
        send("master@127.0.0.1:1")
        send(f"scheduler@127.0.0.1:{master.port}")
        # The same message as the master's runs (from this address, the master's): the two above were dropped.
        send(f"master@127.0.0.1:{master.port}")
        until(lambda: [c for c in containers() if c["statuses"][-1]["state"] == "TASK_FINISHED"],
              what="the master's task run")
        assert len(containers()) == 1
    finally:
        agent.stop()
