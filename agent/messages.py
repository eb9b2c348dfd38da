"""Mesos's wire messages, the subset corral's agent speaks with a master.

Field numbers and types are those of Mesos 1.11's include/mesos/mesos.proto and
src/messages/messages.proto: they are the wire format. Names are flattened (Mesos's
`Value.Scalar` is `ValueScalar` here; the wire never carries a name but the message's own, in
the libprocess path). Every field is declared optional, so that what is required is checked
where it matters with a message that names it, not by the parser. Fields not declared are kept
by the protobuf library as unknown fields and written back out unchanged: a FrameworkInfo or
TaskInfo that the agent checkpoints and re-sends when it re-registers loses nothing.

    messages.RunTaskMessage.FromString(body)      messages.PingSlaveMessage(connected=True)
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "corral.mesos"

ENUMS = {
    "TaskState": dict(TASK_STAGING=6, TASK_STARTING=0, TASK_RUNNING=1, TASK_KILLING=8, TASK_FINISHED=2,
                      TASK_FAILED=3, TASK_KILLED=4, TASK_ERROR=7, TASK_LOST=5, TASK_DROPPED=9,
                      TASK_UNREACHABLE=10, TASK_GONE=11, TASK_GONE_BY_OPERATOR=12, TASK_UNKNOWN=13),
    "Source": dict(SOURCE_MASTER=0, SOURCE_SLAVE=1, SOURCE_EXECUTOR=2),
    "Reason": dict(
        REASON_COMMAND_EXECUTOR_FAILED=0, REASON_CONTAINER_LAUNCH_FAILED=21, REASON_CONTAINER_LIMITATION=19,
        REASON_CONTAINER_LIMITATION_DISK=20, REASON_CONTAINER_LIMITATION_MEMORY=8, REASON_CONTAINER_PREEMPTED=17,
        REASON_CONTAINER_UPDATE_FAILED=22, REASON_MAX_COMPLETION_TIME_REACHED=33,
        REASON_EXECUTOR_REGISTRATION_TIMEOUT=23, REASON_EXECUTOR_REREGISTRATION_TIMEOUT=24,
        REASON_EXECUTOR_TERMINATED=1, REASON_EXECUTOR_UNREGISTERED=2, REASON_FRAMEWORK_REMOVED=3,
        REASON_GC_ERROR=4, REASON_INVALID_FRAMEWORKID=5, REASON_INVALID_OFFERS=6, REASON_IO_SWITCHBOARD_EXITED=27,
        REASON_MASTER_DISCONNECTED=7, REASON_RECONCILIATION=9, REASON_RESOURCES_UNKNOWN=18,
        REASON_SLAVE_DISCONNECTED=10, REASON_SLAVE_DRAINING=34, REASON_SLAVE_REMOVED=11,
        REASON_SLAVE_REMOVED_BY_OPERATOR=31, REASON_SLAVE_REREGISTERED=32, REASON_SLAVE_RESTARTED=12,
        REASON_SLAVE_UNKNOWN=13, REASON_TASK_KILLED_DURING_LAUNCH=30, REASON_TASK_CHECK_STATUS_UPDATED=28,
        REASON_TASK_HEALTH_CHECK_STATUS_UPDATED=29, REASON_TASK_GROUP_INVALID=25, REASON_TASK_GROUP_UNAUTHORIZED=26,
        REASON_TASK_INVALID=14, REASON_TASK_UNAUTHORIZED=15, REASON_TASK_UNKNOWN=16),
    "ValueType": dict(SCALAR=0, RANGES=1, SET=2, TEXT=3),
    "RecordType": dict(UPDATE=0, ACK=1),         # StatusUpdateRecord.Type
}

# name -> fields: `name=number:type`, `*` in front for repeated, `:default` after for a default.
# Enums of Mesos's that corral only passes on or compares (capabilities, container and image
# types, docker networks) are plain int32 fields: the same varint on the wire.
MESSAGES = {
    "FrameworkID": "value=1:string",
    "SlaveID": "value=1:string",
    "TaskID": "value=1:string",
    "ExecutorID": "value=1:string",
    "ContainerID": "value=1:string parent=2:ContainerID",
    "UUID": "value=1:bytes",
    "ValueScalar": "value=1:double",
    "ValueRange": "begin=1:uint64 end=2:uint64",
    "ValueRanges": "*range=1:ValueRange",
    "ValueSet": "*item=1:string",
    "ValueText": "value=1:string",
    "Attribute": "name=1:string type=2:ValueType scalar=3:ValueScalar ranges=4:ValueRanges set=6:ValueSet "
                 "text=5:ValueText",
    "Resource": "name=1:string type=2:ValueType scalar=3:ValueScalar ranges=4:ValueRanges set=5:ValueSet "
                "role=6:string",
    "Capability": "type=1:int32",                # FrameworkInfo.Capability and SlaveInfo.Capability
    "FrameworkInfo": "user=1:string name=2:string id=3:FrameworkID failover_timeout=4:double checkpoint=5:bool "
                     "role=6:string *roles=12:string hostname=7:string principal=8:string "
                     "*capabilities=10:Capability",
    "SlaveInfo": "hostname=1:string port=8:int32 *resources=3:Resource *attributes=5:Attribute id=6:SlaveID "
                 "checkpoint=7:bool",
    "EnvironmentVariable": "name=1:string value=2:string type=3:int32",
    "Environment": "*variables=1:EnvironmentVariable",
    "CommandInfo": "environment=2:Environment shell=6:bool:true value=3:string *arguments=7:string user=5:string",
    "DockerInfo": "image=1:string network=2:int32:1",
    "ImageDocker": "name=1:string",
    "Image": "type=1:int32 docker=3:ImageDocker",
    "MesosInfo": "image=1:Image",
    "ContainerInfo": "type=1:int32 hostname=4:string docker=3:DockerInfo mesos=5:MesosInfo",
    "DurationInfo": "nanoseconds=1:int64",
    "KillPolicy": "grace_period=1:DurationInfo",
    "ExecutorInfo": "type=15:int32 executor_id=1:ExecutorID framework_id=8:FrameworkID command=7:CommandInfo "
                    "container=11:ContainerInfo *resources=5:Resource name=9:string data=4:bytes "
                    "shutdown_grace_period=13:DurationInfo labels=14:Labels",
    "Label": "key=1:string value=2:string",
    "Labels": "*labels=1:Label",
    "TaskInfo": "name=1:string task_id=2:TaskID slave_id=3:SlaveID *resources=4:Resource executor=5:ExecutorInfo "
                "command=7:CommandInfo container=9:ContainerInfo kill_policy=12:KillPolicy data=6:bytes "
                "labels=10:Labels",
    "ContainerStatus": "container_id=4:ContainerID executor_pid=3:uint32",
    "TaskStatus": "task_id=1:TaskID state=2:TaskState message=4:string source=9:Source reason=10:Reason "
                  "data=3:bytes slave_id=5:SlaveID executor_id=7:ExecutorID timestamp=6:double uuid=11:bytes "
                  "healthy=8:bool container_status=13:ContainerStatus",
    "Task": "name=1:string task_id=2:TaskID framework_id=3:FrameworkID executor_id=4:ExecutorID slave_id=5:SlaveID "
            "state=6:TaskState *resources=7:Resource *statuses=8:TaskStatus status_update_state=9:TaskState "
            "status_update_uuid=10:bytes container=13:ContainerInfo kill_policy=16:KillPolicy user=14:string",
    # messages.proto
    "StatusUpdate": "framework_id=1:FrameworkID executor_id=2:ExecutorID slave_id=3:SlaveID status=4:TaskStatus "
                    "timestamp=5:double uuid=6:bytes latest_state=7:TaskState",
    "StatusUpdateRecord": "type=1:RecordType update=2:StatusUpdate uuid=3:bytes",
    "RunTaskMessage": "framework_id=1:FrameworkID framework=2:FrameworkInfo task=4:TaskInfo pid=3:string "
                      "launch_executor=6:bool",
    "TaskGroupInfo": "*tasks=1:TaskInfo",
    "RunTaskGroupMessage": "framework=1:FrameworkInfo executor=2:ExecutorInfo task_group=3:TaskGroupInfo "
                           "launch_executor=5:bool",
    "KillTaskMessage": "framework_id=1:FrameworkID task_id=2:TaskID kill_policy=3:KillPolicy",
    "StatusUpdateMessage": "update=1:StatusUpdate pid=2:string",
    "StatusUpdateAcknowledgementMessage": "slave_id=1:SlaveID framework_id=2:FrameworkID task_id=3:TaskID "
                                          "uuid=4:bytes",
    "RegisterSlaveMessage": "slave=1:SlaveInfo version=2:string *agent_capabilities=4:Capability "
                            "resource_version_uuid=5:UUID",
    "ReregisterSlaveMessage": "slave=2:SlaveInfo *executor_infos=4:ExecutorInfo *tasks=3:Task "
                              "*frameworks=8:FrameworkInfo version=6:string *agent_capabilities=9:Capability "
                              "resource_version_uuid=10:UUID",
    "MasterSlaveConnection": "total_ping_timeout_seconds=1:double",
    "ReconcileTasksMessage": "framework_id=1:FrameworkID *statuses=2:TaskStatus framework=3:FrameworkInfo",
    "SlaveRegisteredMessage": "slave_id=1:SlaveID connection=2:MasterSlaveConnection",
    "SlaveReregisteredMessage": "slave_id=1:SlaveID *reconciliations=2:ReconcileTasksMessage "
                                "connection=3:MasterSlaveConnection",
    "UnregisterSlaveMessage": "slave_id=1:SlaveID",
    "PingSlaveMessage": "connected=1:bool",
    "PongSlaveMessage": "",
    "ShutdownFrameworkMessage": "framework_id=1:FrameworkID",
    "ShutdownExecutorMessage": "executor_id=1:ExecutorID framework_id=2:FrameworkID",
    "ShutdownMessage": "message=1:string",
    "ExitedExecutorMessage": "slave_id=1:SlaveID framework_id=2:FrameworkID executor_id=3:ExecutorID status=4:int32",
    "UpdateFrameworkMessage": "framework_id=1:FrameworkID pid=2:string framework_info=3:FrameworkInfo",
}

# SlaveInfo.Capability.Type and FrameworkInfo.Capability.Type values corral uses.
AGENT_MULTI_ROLE, AGENT_HIERARCHICAL_ROLE, AGENT_RESERVATION_REFINEMENT = 1, 2, 3
FRAMEWORK_TASK_KILLING_STATE, FRAMEWORK_PARTITION_AWARE = 2, 5
CONTAINER_DOCKER, CONTAINER_MESOS = 1, 2                   # ContainerInfo.Type
IMAGE_APPC, IMAGE_DOCKER = 1, 2                            # Image.Type
DOCKER_HOST, DOCKER_BRIDGE, DOCKER_NONE, DOCKER_USER = 1, 2, 3, 4     # ContainerInfo.DockerInfo.Network

_SCALARS = {
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "uint32": descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
    "uint64": descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
}


def _file() -> descriptor_pb2.FileDescriptorProto:
    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="corral/mesos.proto", package=PACKAGE, syntax="proto2")
    for name, values in ENUMS.items():
        enum = proto.enum_type.add(name=name)
        for value_name, number in values.items():
            enum.value.add(name=value_name, number=number)
    for name, spec in MESSAGES.items():
        message = proto.message_type.add(name=name)
        for token in spec.split():
            repeated = token.startswith("*")
            field_name, _, rest = token.lstrip("*").partition("=")
            number, kind, *default = rest.split(":")
            field = message.field.add(name=field_name, number=int(number),
                                      label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if kind in _SCALARS:
                field.type = _SCALARS[kind]
            else:
                field.type = F.TYPE_ENUM if kind in ENUMS else F.TYPE_MESSAGE
                field.type_name = f".{PACKAGE}.{kind}"
            if default:
                field.default_value = default[0]
    return proto


def _classes() -> dict[str, type]:
    pool = descriptor_pool.DescriptorPool()
    described = pool.Add(_file())
    return {name: message_factory.GetMessageClass(described.message_types_by_name[name]) for name in MESSAGES}


_CLASSES = _classes()
globals().update(_CLASSES)


def message_class(name: str) -> type | None:
    """The class of a message named on the wire (`mesos.internal.PingSlaveMessage`), or None."""
    prefix = "mesos.internal."
    return _CLASSES.get(name[len(prefix):]) if name.startswith(prefix) else None


def wire_name(message) -> str:
    """The name libprocess routes a message by: mesos.internal.<Message>."""
    return "mesos.internal." + message.DESCRIPTOR.name


def state_name(number: int) -> str:
    return _ENUM_NAMES["TaskState"][number]


def reason_number(name: str | None) -> int | None:
    return ENUMS["Reason"].get(name) if name else None


_ENUM_NAMES = {enum: {number: name for name, number in values.items()} for enum, values in ENUMS.items()}
