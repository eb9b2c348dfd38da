"""A custom executor, written here against Mesos's v1 executor API (executor.proto, as JSON),
runs a framework's tasks on corral's agent under a real master: SUBSCRIBE, LAUNCH, UPDATE,
ACKNOWLEDGED, KILL; its end fails the tasks it leaves."""

from __future__ import annotations

import json
import sys

from tests.mesos.mesoskit import acknowledged, agent_work_dir, joined, until, updates

EXECUTOR = r'''
import base64, http.client, json, os, subprocess, sys, uuid

host, port = os.environ["MESOS_AGENT_ENDPOINT"].split(":")
ids = {"framework_id": {"value": os.environ["MESOS_FRAMEWORK_ID"]},
       "executor_id": {"value": os.environ["MESOS_EXECUTOR_ID"]}}


def call(body):
    conn = http.client.HTTPConnection(host, int(port))
    conn.request("POST", "/api/v1/executor", json.dumps({**ids, **body}),
                 {"Content-Type": "application/json", "Accept": "application/json"})
    return conn.getresponse()


def update(task_id, state, message=""):
    status = {"task_id": task_id, "state": state, "message": message, "source": "SOURCE_EXECUTOR",
              "uuid": base64.b64encode(uuid.uuid4().bytes).decode()}
    answer = call({"type": "UPDATE", "update": {"status": status}})
    assert answer.status == 202, (answer.status, answer.read())


events = call({"type": "SUBSCRIBE", "subscribe": {}})
assert events.status == 200, events.read()
children, ended = {}, set()
while True:
    size = b""
    while not size.endswith(b"\n"):
        byte = events.read(1)
        if not byte:
            sys.exit(0)
        size += byte
    event = json.loads(events.read(int(size)))
    print(event["type"], flush=True)
    if event["type"] == "SUBSCRIBED":
        assert event["subscribed"]["container_id"]["value"]
    elif event["type"] == "LAUNCH":
        task = event["launch"]["task"]
        update(task["task_id"], "TASK_STARTING")
        command = base64.b64decode(task["data"]).decode()
        if command == "crash":
            update(task["task_id"], "TASK_RUNNING")
            sys.exit(1)
        children[task["task_id"]["value"]] = subprocess.Popen(["/bin/sh", "-c", command])
        update(task["task_id"], "TASK_RUNNING", "run by a custom executor")
        if children[task["task_id"]["value"]].wait() == 0 if command == "true" else False:
            update(task["task_id"], "TASK_FINISHED", "done")
            ended.add(task["task_id"]["value"])
    elif event["type"] == "KILL":
        task_id = event["kill"]["task_id"]
        children[task_id["value"]].kill()
        children[task_id["value"]].wait()
        update(task_id, "TASK_KILLED", "killed by the executor")
        ended.add(task_id["value"])
    elif event["type"] == "ACKNOWLEDGED" and ended or event["type"] == "SHUTDOWN":
        sys.exit(0)
'''


def _task(name: str, command: str, executor: str) -> str:
    import base64
    resources = [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                 {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]
    return json.dumps({
        "name": name, "task_id": {"value": name}, "agent_id": {"value": ""}, "resources": resources,
        "data": base64.b64encode(command.encode()).decode(),
        "executor": {"executor_id": {"value": "custom"}, "command": {"value": executor},
                     "resources": resources, "shutdown_grace_period": {"nanoseconds": 1_000_000_000}}})


def test_a_custom_executor_runs_finishes_and_kills_tasks(mesos_master, joined_agent, tmp_path):
    script = tmp_path / "executor.py"
    script.write_text(EXECUTOR)
    master = mesos_master()
    agent = joined_agent(master)
    until(lambda: joined(master, agent.port))
    done = master.execute(f"--task={_task('quick', 'true', f'{sys.executable} {script}')}")
    assert updates(done.stdout) == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"], done.stdout + done.stderr
    assert "message: 'run by a custom executor'" in done.stdout
    killed = master.execute(f"--task={_task('slow', 'sleep 100', f'{sys.executable} {script}')}",
                            "--kill_after=1secs")
    assert updates(killed.stdout)[-1] == "TASK_KILLED", killed.stdout + killed.stderr
    assert "message: 'killed by the executor'" in killed.stdout
    # Each executor exits once its task's end is acknowledged.
    until(lambda: all(c["statuses"][-1]["state"] == "TASK_FINISHED"
                      for c in agent.state()["containers"]),
          what="both executors exited")
    assert len(agent.state()["containers"]) == 2


def test_an_executor_that_dies_fails_the_tasks_it_leaves(mesos_master, joined_agent, tmp_path):
    script = tmp_path / "executor.py"
    script.write_text(EXECUTOR)
    master = mesos_master()
    agent = joined_agent(master)
    until(lambda: joined(master, agent.port))
    done = master.execute(f"--task={_task('doomed', 'crash', f'{sys.executable} {script}')}")
    assert updates(done.stdout) == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"], done.stdout + done.stderr
    assert "reason: REASON_EXECUTOR_TERMINATED" in done.stdout and "source: SOURCE_AGENT" in done.stdout
    until(lambda: joined(master, agent.port)["used_resources"]["cpus"] == 0, what="the executor's resources free")


# An executor that keeps going while the agent is away, as Mesos's executors of checkpointing
# frameworks do: it subscribes again (listing the task it holds) and resends what was refused.
RECONNECTING = r'''
import base64, http.client, json, os, subprocess, sys, threading, time, uuid

host, port = os.environ["MESOS_AGENT_ENDPOINT"].split(":")
ids = {"framework_id": {"value": os.environ["MESOS_FRAMEWORK_ID"]},
       "executor_id": {"value": os.environ["MESOS_EXECUTOR_ID"]}}
held = {}


def call(body):
    while True:
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            conn.request("POST", "/api/v1/executor", json.dumps({**ids, **body}),
                         {"Content-Type": "application/json", "Accept": "application/json"})
            answer = conn.getresponse()
            if answer.status in (200, 202):
                return answer
        except OSError:
            pass
        time.sleep(0.1)                     # the agent is away: again, until it is back


def update(task_id, state):
    status = {"task_id": task_id, "state": state, "source": "SOURCE_EXECUTOR",
              "uuid": base64.b64encode(uuid.uuid4().bytes).decode()}
    call({"type": "UPDATE", "update": {"status": status}})


def run(task):
    update(task["task_id"], "TASK_RUNNING")
    subprocess.run(["/bin/sh", "-c", base64.b64decode(task["data"]).decode()])
    update(task["task_id"], "TASK_FINISHED")


while True:
    events = call({"type": "SUBSCRIBE", "subscribe": {"unacknowledged_tasks": list(held.values())}})
    while True:
        size = b""
        while not size.endswith(b"\n"):
            try:
                byte = events.read(1)
            except Exception:               # the connection reset, or a chunk cut short
                byte = b""
            if not byte:
                break
            size += byte
        if not size.endswith(b"\n"):
            break                           # the agent went away
        event = json.loads(events.read(int(size)))
        if event["type"] == "LAUNCH":
            task = event["launch"]["task"]
            held[task["task_id"]["value"]] = task
            threading.Thread(target=run, args=(task,)).start()
        elif event["type"] == "ACKNOWLEDGED" or event["type"] == "SHUTDOWN":
            if event["type"] == "SHUTDOWN" or held and os.path.exists(os.environ["MESOS_SANDBOX"] + "/done"):
                sys.exit(0)
'''


def test_a_checkpointing_frameworks_executor_goes_on_through_an_agent_sigkill(mesos_master, joined_agent,
                                                                              tmp_path):
    script = tmp_path / "executor.py"
    script.write_text(RECONNECTING)
    master = mesos_master()
    agent = joined_agent(master)
    until(lambda: joined(master, agent.port))
    task = _task("lasting", "sleep 2; touch $MESOS_SANDBOX/done", f"{sys.executable} {script}")
    framework = master.execute_async("--checkpoint", f"--task={task}")
    seen = []
    for line in framework.stdout:
        seen.append(line)
        if "TASK_RUNNING" in line:
            break
    # Once RUNNING is acknowledged (one unacknowledged at the crash would be sent again: at least once).
    until(lambda: acknowledged(agent_work_dir(agent)) == 1, what="TASK_RUNNING acknowledged")
    agent.sigkill()
    restarted = joined_agent(master, port=agent.port)
    out = "".join(seen) + framework.communicate(timeout=90)[0]
    assert updates(out) == ["TASK_RUNNING", "TASK_FINISHED"], out
    until(lambda: all(c["statuses"][-1]["state"] == "TASK_FINISHED"     # it exits once FINISHED is acknowledged
                      for c in restarted.state()["containers"]),
          what="the executor exited")


def test_an_executor_that_does_not_subscribe_again_is_shut_down(mesos_master, joined_agent, tmp_path):
    script = tmp_path / "executor.py"
    # The agent gone, this one only waits: it never subscribes again.
    script.write_text(EXECUTOR.replace("        byte = events.read(1)\n        if not byte:\n            sys.exit(0)",
                                       "        try:\n            byte = events.read(1)\n        except Exception:\n"
                                       "            byte = b''\n        if not byte:\n            time.sleep(100)")
                      .replace("import base64,", "import time, base64,"))
    master = mesos_master()
    agent = joined_agent(master)
    until(lambda: joined(master, agent.port))
    task = _task("abandoned", "sleep 100", f"{sys.executable} {script}")
    framework = master.execute_async("--checkpoint", f"--task={task}")
    seen = []
    for line in framework.stdout:
        seen.append(line)
        if "TASK_RUNNING" in line:
            break
    until(lambda: acknowledged(agent_work_dir(agent)) == 2, what="STARTING and RUNNING acknowledged")
    agent.sigkill()
    joined_agent(master, port=agent.port)
    out = "".join(seen) + framework.communicate(timeout=90)[0]
    assert updates(out) == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"], out
    assert "reason: REASON_EXECUTOR_REREGISTRATION_TIMEOUT" in out
