"""The replies of Mesos's v1 agent API (include/mesos/v1/agent/agent.proto and mesos.proto), as
protobuf messages with Mesos's field names, numbers and labels, to check the agent's JSON
replies strictly: an unknown field, a wrong type or a missing required field fails the test.

Only the messages, and the fields, of the calls corral answers are declared; a field corral
never sets may be left out, since a reply holding it would then fail, as it should until it is
declared here. (The master protocol's messages, for joining a master, are the agent's own, in
agent/messages.py where that is merged; these are the tests'.)

    check_reply(reply)      # the parsed agent.Response, or an AssertionError naming what is wrong
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

PACKAGE = "tests.mesos.v1"

ENUMS = {
    "ValueType": dict(SCALAR=0, RANGES=1, SET=2, TEXT=3),
    "ResponseType": dict(UNKNOWN=0, GET_HEALTH=1, GET_FLAGS=2, GET_VERSION=3, GET_METRICS=4, GET_LOGGING_LEVEL=5,
                         LIST_FILES=6, READ_FILE=7, GET_STATE=8, GET_CONTAINERS=9, GET_FRAMEWORKS=10,
                         GET_EXECUTORS=11, GET_OPERATIONS=17, GET_TASKS=12, GET_AGENT=14,
                         GET_RESOURCE_PROVIDERS=16, WAIT_NESTED_CONTAINER=13, WAIT_CONTAINER=15),
    "TaskState": dict(TASK_STAGING=6, TASK_STARTING=0, TASK_RUNNING=1, TASK_KILLING=8, TASK_FINISHED=2,
                      TASK_FAILED=3, TASK_KILLED=4, TASK_ERROR=7, TASK_LOST=5, TASK_DROPPED=9,
                      TASK_UNREACHABLE=10, TASK_GONE=11, TASK_GONE_BY_OPERATOR=12, TASK_UNKNOWN=13),
    # TaskStatus.Reason
    "Reason": dict(REASON_COMMAND_EXECUTOR_FAILED=0, REASON_CONTAINER_LAUNCH_FAILED=21,
                   REASON_CONTAINER_LIMITATION=19, REASON_CONTAINER_LIMITATION_DISK=20,
                   REASON_CONTAINER_LIMITATION_MEMORY=8, REASON_CONTAINER_PREEMPTED=17,
                   REASON_CONTAINER_UPDATE_FAILED=22, REASON_MAX_COMPLETION_TIME_REACHED=33,
                   REASON_EXECUTOR_REGISTRATION_TIMEOUT=23, REASON_EXECUTOR_REREGISTRATION_TIMEOUT=24,
                   REASON_EXECUTOR_TERMINATED=1, REASON_EXECUTOR_UNREGISTERED=2, REASON_FRAMEWORK_REMOVED=3,
                   REASON_GC_ERROR=4, REASON_INVALID_FRAMEWORKID=5, REASON_INVALID_OFFERS=6,
                   REASON_IO_SWITCHBOARD_EXITED=27, REASON_MASTER_DISCONNECTED=7, REASON_RECONCILIATION=9,
                   REASON_RESOURCES_UNKNOWN=18, REASON_AGENT_DISCONNECTED=10, REASON_AGENT_DRAINING=34,
                   REASON_AGENT_REMOVED=11, REASON_AGENT_REMOVED_BY_OPERATOR=31, REASON_AGENT_REREGISTERED=32,
                   REASON_AGENT_RESTARTED=12, REASON_AGENT_UNKNOWN=13, REASON_TASK_KILLED_DURING_LAUNCH=30,
                   REASON_TASK_CHECK_STATUS_UPDATED=28, REASON_TASK_HEALTH_CHECK_STATUS_UPDATED=29,
                   REASON_TASK_GROUP_INVALID=25, REASON_TASK_GROUP_UNAUTHORIZED=26, REASON_TASK_INVALID=14,
                   REASON_TASK_UNAUTHORIZED=15, REASON_TASK_UNKNOWN=16),
}

# name -> fields "name=number:type", "*" in front for repeated, "!" for required.
MESSAGES = {
    # mesos.proto
    "FrameworkID": "!value=1:string",
    "AgentID": "!value=1:string",
    "TaskID": "!value=1:string",
    "ExecutorID": "!value=1:string",
    "ContainerID": "!value=1:string parent=2:ContainerID",
    "TimeInfo": "!nanoseconds=1:int64",
    "DurationInfo": "!nanoseconds=1:int64",
    "ValueScalar": "!value=1:double",
    "ValueRange": "!begin=1:uint64 !end=2:uint64",
    "ValueRanges": "*range=1:ValueRange",
    "ValueSet": "*item=1:string",
    "ValueText": "!value=1:string",
    "Resource": "!name=1:string !type=2:ValueType scalar=3:ValueScalar ranges=4:ValueRanges set=5:ValueSet "
                "role=6:string",
    "AgentInfo": "!hostname=1:string port=8:int32 *resources=3:Resource id=6:AgentID",
    "FrameworkInfo": "!user=1:string !name=2:string id=3:FrameworkID failover_timeout=4:double checkpoint=5:bool "
                     "*roles=12:string hostname=7:string principal=8:string",
    "ExecutorInfo": "!executor_id=1:ExecutorID framework_id=8:FrameworkID name=9:string",
    "Task": "!name=1:string !task_id=2:TaskID !framework_id=3:FrameworkID executor_id=4:ExecutorID "
            "!agent_id=5:AgentID !state=6:TaskState *resources=7:Resource",
    "Operation": "framework_id=1:FrameworkID agent_id=2:AgentID",
    "VersionInfo": "!version=1:string build_date=2:string build_time=3:double build_user=4:string "
                   "git_sha=5:string git_branch=6:string git_tag=7:string",
    "Flag": "!name=1:string value=2:string",
    "Metric": "!name=1:string value=2:double",
    "FileInfo": "!path=1:string nlink=2:int32 size=3:uint64 mtime=4:TimeInfo mode=5:uint32 uid=6:string "
                "gid=7:string",
    "ContainerStatus": "container_id=4:ContainerID executor_pid=3:uint32",      # network_infos, cgroup_info: not set
    # every scalar field of ResourceStatistics (its nested statistics corral never sets)
    "ResourceStatistics": "!timestamp=1:double processes=30:uint32 threads=31:uint32 "
                          "cpus_user_time_secs=2:double cpus_system_time_secs=3:double cpus_limit=4:double "
                          "cpus_soft_limit=45:double cpus_nr_periods=7:uint32 cpus_nr_throttled=8:uint32 "
                          "cpus_throttled_time_secs=9:double mem_total_bytes=36:uint64 "
                          "mem_total_memsw_bytes=37:uint64 mem_kmem_usage_bytes=52:uint64 "
                          "mem_kmem_tcp_usage_bytes=53:uint64 mem_limit_bytes=6:uint64 "
                          "mem_soft_limit_bytes=38:uint64 mem_file_bytes=10:uint64 mem_anon_bytes=11:uint64 "
                          "mem_cache_bytes=39:uint64 mem_rss_bytes=5:uint64 mem_mapped_file_bytes=12:uint64 "
                          "mem_swap_bytes=40:uint64 mem_unevictable_bytes=41:uint64 "
                          "mem_low_pressure_counter=32:uint64 mem_medium_pressure_counter=33:uint64 "
                          "mem_critical_pressure_counter=34:uint64 disk_limit_bytes=26:uint64 "
                          "disk_used_bytes=27:uint64 net_rx_packets=14:uint64 net_rx_bytes=15:uint64 "
                          "net_rx_errors=16:uint64 net_rx_dropped=17:uint64 net_tx_packets=18:uint64 "
                          "net_tx_bytes=19:uint64 net_tx_errors=20:uint64 net_tx_dropped=21:uint64 "
                          "net_tx_rate_limit=46:uint64 net_tx_burst_rate_limit=47:uint64 "
                          "net_tx_burst_size=48:uint64 net_rx_rate_limit=49:uint64 "
                          "net_rx_burst_rate_limit=50:uint64 net_rx_burst_size=51:uint64",
    # agent.proto: Response's
    "GetHealth": "!healthy=1:bool",
    "GetFlags": "*flags=1:Flag",
    "GetVersion": "!version_info=1:VersionInfo",
    "GetMetrics": "*metrics=1:Metric",
    "GetLoggingLevel": "!level=1:uint32",
    "ListFiles": "*file_infos=1:FileInfo",
    "ReadFile": "!size=1:uint64 !data=2:bytes",
    "GetState": "get_tasks=1:GetTasks get_executors=2:GetExecutors get_frameworks=3:GetFrameworks",
    "Container": "framework_id=1:FrameworkID executor_id=2:ExecutorID executor_name=3:string "
                 "!container_id=4:ContainerID container_status=5:ContainerStatus "
                 "resource_statistics=6:ResourceStatistics",
    "GetContainers": "*containers=1:Container",
    "Framework": "!framework_info=1:FrameworkInfo",
    "GetFrameworks": "*frameworks=1:Framework *completed_frameworks=2:Framework",
    "Executor": "!executor_info=1:ExecutorInfo",
    "GetExecutors": "*executors=1:Executor *completed_executors=2:Executor",
    "GetOperations": "*operations=1:Operation",
    "GetTasks": "*pending_tasks=1:Task *queued_tasks=2:Task *launched_tasks=3:Task *terminated_tasks=4:Task "
                "*completed_tasks=5:Task",
    "GetAgent": "agent_info=1:AgentInfo",
    "ResourceProviderInfo": "!type=3:string !name=4:string",
    "ResourceProvider": "!resource_provider_info=1:ResourceProviderInfo *total_resources=2:Resource",
    "GetResourceProviders": "*resource_providers=1:ResourceProvider",
    "TaskResourceLimitation": "*resources=1:Resource",
    "WaitContainer": "exit_status=1:int32 state=2:TaskState reason=3:Reason limitation=4:TaskResourceLimitation "
                     "message=5:string",
    "Response": "type=1:ResponseType get_health=2:GetHealth get_flags=3:GetFlags get_version=4:GetVersion "
                "get_metrics=5:GetMetrics get_logging_level=6:GetLoggingLevel list_files=7:ListFiles "
                "read_file=8:ReadFile get_state=9:GetState get_containers=10:GetContainers "
                "get_frameworks=11:GetFrameworks get_executors=12:GetExecutors get_operations=18:GetOperations "
                "get_tasks=13:GetTasks get_agent=15:GetAgent get_resource_providers=17:GetResourceProviders "
                "wait_container=16:WaitContainer",
}

_SCALARS = {name: getattr(descriptor_pb2.FieldDescriptorProto, "TYPE_" + name.upper())
            for name in ("string", "bytes", "bool", "double", "int32", "int64", "uint32", "uint64")}


def _build() -> dict:
    file = descriptor_pb2.FileDescriptorProto(name="tests_mesos_v1_agent.proto", package=PACKAGE, syntax="proto2")
    for name, values in ENUMS.items():
        enum = file.enum_type.add(name=name)
        for value_name, number in values.items():
            enum.value.add(name=value_name, number=number)
    for name, spec in MESSAGES.items():
        message = file.message_type.add(name=name)
        for field in spec.split():
            label = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
            if field[0] == "*":
                field, label = field[1:], descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
            elif field[0] == "!":
                field, label = field[1:], descriptor_pb2.FieldDescriptorProto.LABEL_REQUIRED
            field_name, rest = field.split("=")
            number, kind = rest.split(":")
            added = message.field.add(name=field_name, number=int(number), label=label)
            if kind in _SCALARS:
                added.type = _SCALARS[kind]
            else:
                added.type = (descriptor_pb2.FieldDescriptorProto.TYPE_ENUM if kind in ENUMS
                              else descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE)
                added.type_name = f".{PACKAGE}.{kind}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
            for name in MESSAGES}


CLASSES = _build()


def check(name: str, value: dict):
    """`value` parsed strictly as the message `name`; AssertionError naming what does not fit."""
    message = CLASSES[name]()
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=False)
    except json_format.ParseError as e:
        raise AssertionError(f"not a Mesos {name}: {e}\n{value}") from None
    missing = message.FindInitializationErrors()
    assert not missing, f"not a Mesos {name}: required fields missing: {missing}\n{value}"
    return message


def check_reply(reply: dict):
    """An agent.Response whose type names the field that holds the answer."""
    message = check("Response", reply)
    assert message.HasField(reply["type"].lower()), f"{reply['type']} holds no {reply['type'].lower()}: {reply}"
    return message
