"""The operator API's view of a framework's task under a real master: GET_FRAMEWORKS, GET_TASKS,
GET_EXECUTORS, GET_STATE and GET_CONTAINERS, each reply parsed strictly as agent.proto's."""

from __future__ import annotations

import signal

from tests.agent.agent_v1 import check_reply
from tests.mesos.mesoskit import joined, until


def test_a_frameworks_task_as_the_operator_api_shows_it(mesos_master, joined_agent):
    master = mesos_master()
    agent = joined_agent(master)
    slave_id = until(lambda: joined(master, agent.port), what="the agent registered")["id"]
    framework = master.execute_async("--name=ops", "--command=sleep 100", "--resources=cpus:0.1;mem:32")
    try:
        def launched():
            reply = agent.call({"type": "GET_TASKS"})[1]
            return check_reply(reply).get_tasks.launched_tasks, reply["get_tasks"]["launched_tasks"]
        until(lambda: [t for t in launched()[1] if t["state"] == "TASK_RUNNING"], what="the task running")
        (task,), _ = launched()
        assert task.name == "ops" and task.agent_id.value == slave_id and task.executor_id.value == task.task_id.value
        assert {r.name for r in task.resources} >= {"cpus", "mem"}

        (listed,) = check_reply(agent.call({"type": "GET_FRAMEWORKS"})[1]).get_frameworks.frameworks
        assert listed.framework_info.id.value == task.framework_id.value and listed.framework_info.name
        assert check_reply(agent.call({"type": "GET_EXECUTORS"})[1]).get_executors.executors == []  # a command executor
        state = check_reply(agent.call({"type": "GET_STATE"})[1]).get_state
        assert [t.task_id.value for t in state.get_tasks.launched_tasks] == [task.task_id.value]
        assert len(state.get_frameworks.frameworks) == 1

        # An executor's container is listed without show_standalone, as mesos-agent lists it.
        (container,) = check_reply(agent.call({"type": "GET_CONTAINERS"})[1]).get_containers.containers
        assert container.framework_id.value == task.framework_id.value
        assert container.executor_id.value == task.task_id.value
        assert container.executor_name == f"Command Executor (Task: {task.task_id.value})"
        assert container.resource_statistics.processes >= 1
        assert [c["container_id"]["value"] for c in agent.state()["containers"]] == [container.container_id.value]
    finally:
        framework.send_signal(signal.SIGKILL)
        framework.communicate()
    until(lambda: not check_reply(agent.call({"type": "GET_CONTAINERS"})[1]).get_containers.containers,
          timeout=60, what="the task's container ended")


def test_a_custom_executor_as_the_operator_api_shows_it(mesos_master, joined_agent, tmp_path):
    import sys

    from tests.mesos.test_executor import EXECUTOR, _task
    script = tmp_path / "executor.py"
    script.write_text(EXECUTOR)
    master = mesos_master()
    agent = joined_agent(master)
    until(lambda: joined(master, agent.port))
    framework = master.execute_async(f"--task={_task('slow', 'sleep 100', f'{sys.executable} {script}')}")
    try:
        (executor,) = until(lambda: check_reply(agent.call({"type": "GET_EXECUTORS"})[1]).get_executors.executors,
                            what="the executor running")
        assert executor.executor_info.executor_id.value == "custom"
        (container,) = until(lambda: check_reply(agent.call({"type": "GET_CONTAINERS"})[1]).get_containers.containers,
                             what="its container")
        assert container.executor_id.value == "custom"
        assert container.framework_id.value == executor.executor_info.framework_id.value
    finally:
        framework.send_signal(signal.SIGKILL)
        framework.communicate()
    until(lambda: not check_reply(agent.call({"type": "GET_EXECUTORS"})[1]).get_executors.executors,
          timeout=60, what="the executor gone")
