"""`corral agent`'s flags: mesos-agent names, dashed forms, MESOS_/CORRAL_ variables, defaults,
and one clear line for a bad flag."""

from __future__ import annotations

import pytest

from corral.agent.flags import FlagError, parse
from corral.agent.resources import Resources


def test_defaults():
    flags = parse([], {})
    assert (flags.ip, flags.port, flags.recover, flags.strict) == ("127.0.0.1", 5051, "reconnect", True)
    assert flags.work_dir == "/var/lib/corral" and flags.resources is None and flags.credentials is None
    assert flags.container_ports_watch_interval == 30 and flags.enforce_container_ports is False
    assert flags.isolation == ["cgroups/cpu", "cgroups/mem", "namespaces/pid", "namespaces/ipc",
                               "linux/capabilities", "linux/nnp", "linux/seccomp", "linux/masked_paths",
                               "cgroups/devices", "linux/devices", "cgroups/pids", "posix/rlimits"]
    assert flags.effective_capabilities is None and flags.bounding_capabilities is None
    assert flags.seccomp_profile_name is None and flags.allowed_devices is None and flags.cgroups_pids_limit is None
    assert flags.containerizers == ["mesos"] and flags.http_request_timeout == 30
    assert (flags.docker_socket, flags.docker_kill_orphans) == ("unix:///var/run/docker.sock", True)
    assert flags.external_containerizer_path is None and flags.external_containerizer_timeout == 30


def test_docker_socket_defaults_to_docker_host_as_docker_does():
    assert parse([], {"DOCKER_HOST": "unix:///tmp/d.sock"}).docker_socket == "unix:///tmp/d.sock"
    assert parse(["--docker_socket=tcp://127.0.0.1:2375"], {"DOCKER_HOST": "x"}).docker_socket == "tcp://127.0.0.1:2375"


def test_names_dashes_values_and_booleans():
    flags = parse(["--work_dir=/w", "--runtime-dir", "/r", "--resources=cpus:2;ports:[5-6]", "--no-strict",
                   "--enforce-container-ports", "--container_ports_watch_interval=250ms", "--port=5052",
                   "--isolation=cgroups/mem,network/ports", "--containerizers=docker,mesos", "--ip=::1",
                   "--cgroups_enable_cfs=false", "--recover=cleanup"], {})
    assert (flags.work_dir, flags.runtime_dir, flags.port, flags.ip) == ("/w", "/r", 5052, "::1")
    assert flags.resources == Resources.parse("cpus:2;ports:[5-6]")
    assert flags.strict is False and flags.enforce_container_ports is True and flags.cgroups_enable_cfs is False
    assert flags.container_ports_watch_interval == 0.25 and flags.recover == "cleanup"
    assert flags.isolation == ["cgroups/mem", "network/ports"] and flags.containerizers == ["docker", "mesos"]
    assert {"name": "port", "value": "5052"} in flags.to_list()


def test_environment_command_line_wins_and_corral_over_mesos(tmp_path):
    env = {"MESOS_PORT": "6000", "CORRAL_PORT": "6001", "MESOS_WORK_DIR": "/m", "MESOS_STRICT": "false",
           "MESOS_NOT_A_FLAG": "ignored"}
    flags = parse([], env)
    assert (flags.port, flags.work_dir, flags.strict) == (6001, "/m", False)
    assert parse(["--port=7000"], env).port == 7000


def test_resources_and_credentials_from_files(tmp_path):
    (tmp_path / "r.json").write_text('[{"name": "cpus", "type": "SCALAR", "scalar": {"value": 3}}]')
    (tmp_path / "creds").write_text("# principal secret\nops s3cret\nci  other\n")
    (tmp_path / "creds.json").write_text('{"credentials": [{"principal": "ops", "secret": "x"}]}')
    flags = parse([f"--resources=file://{tmp_path}/r.json", f"--credentials={tmp_path}/creds"], {})
    assert flags.resources.get("cpus") == 3 and flags.credentials == {"ops": "s3cret", "ci": "other"}
    assert parse([f"--credentials=file://{tmp_path}/creds.json"], {}).credentials == {"ops": "x"}


@pytest.mark.parametrize("argv, message", [
    (["--port=abc"], "--port=abc: is not a port number 1-65535"),
    (["--port=70000"], "--port=70000: is not a port number 1-65535"),
    (["--ip=localhost"], "--ip=localhost: is not an IP address"),
    (["--recover=maybe"], "--recover=maybe: must be one of reconnect, cleanup"),
    (["--strict=perhaps"], "--strict=perhaps: is not true or false"),
    (["--container_ports_watch_interval=5parsecs"], "--container_ports_watch_interval=5parsecs: is not a duration"),
    (["--container_ports_watch_interval=0secs"], "must be longer than 0"),
    (["--resources=cpus:x"], "--resources=cpus:x: bad resource 'cpus:x': 'x' is not a number"),
    (["--resources=file:///no/such"], "--resources=file:///no/such: cannot be read: No such file or directory"),
    (["--isolation=cgroups/cpu,gpu/warp"], "--isolation=cgroups/cpu,gpu/warp: unknown isolator 'gpu/warp'"),
    (["--containerizers=mesos,rkt"],
     "--containerizers=mesos,rkt: names unknown one: rkt (known: mesos, docker, external)"),
    (["--containerizers=mesos,external"], "--containerizers=external needs --external_containerizer_path"),
    (["--http_request_timeout=0"], "--http_request_timeout=0: must be longer than 0"),
    (["--credentials=/no/such"], "--credentials=/no/such: cannot be read"),
    (["--cgroups_root=/sys/fs/cgroup"], "--cgroups_root=/sys/fs/cgroup: invalid cgroups root '/sys/fs/cgroup'"),
    (["--cgroups_root=corral/../.."], "--cgroups_root=corral/../..: invalid cgroups root"),
    (["--cgroups_root="], "--cgroups_root=: invalid cgroups root ''"),
    (["--http_request_timeout=" + "9" * 400], "must be at most 1weeks"),
    (["--external_containerizer_timeout=2weeks"], "--external_containerizer_timeout=2weeks: must be at most 1weeks"),
    (["--port=\u00b2"], "is not a port number 1-65535"),
    (["--work_dir="], "--work_dir=: must name a directory"),
    (["--work_dirr=/x"], "unknown flag --work_dirr"),
    (["--bounding_capabilities=NET_RAW"], 'is not {"capabilities": ["NET_RAW", ...]}'),
    (['--effective_capabilities={"capabilities": ["WARP_DRIVE"]}'], "unknown capability 'WARP_DRIVE'"),
    (["--seccomp_config_dir=/no/such"], "--seccomp_config_dir=/no/such: is not a directory"),
    (["--seccomp_profile_name=default.json"], "a profile name needs the agent's --seccomp_config_dir"),
    (["--seccomp_config_dir=/", "--seccomp_profile_name=nothing.json"], "/nothing.json does not exist"),
    (['--allowed_devices={"allowed_devices": [{"device": {"path": "/etc/passwd"}}]}'],
     "not a character or block device"),
    (["--allowed_devices=[]"], 'not {"allowed_devices"'),
    (["--cgroups_pids_limit=0"], "--cgroups_pids_limit=0: the pids limit must be an integer from 1 to 4194304"),
    (["--cgroups_pids_limit=" + "9" * 23], "the pids limit must be an integer from 1 to 4194304"),
    (["--cgroups_pids_limit=\u00b2"], "--cgroups_pids_limit=\u00b2: is not a whole number"),
    (["--port"], "--port needs a value"),
    (["--no-port"], "--no-port: --port is not a boolean flag"),
    (["work_dir=/x"], "unexpected argument 'work_dir=/x': flags are --name=value"),
])
def test_a_bad_flag_is_one_line_naming_it(argv, message):
    with pytest.raises(FlagError) as info:
        parse(argv, {})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_bad_environment_value_names_the_flag():
    with pytest.raises(FlagError, match="--port=x: is not a port"):
        parse([], {"MESOS_PORT": "x"})


def test_bad_credentials_files(tmp_path):
    (tmp_path / "c").write_text("only-a-principal\n")
    with pytest.raises(FlagError, match="line 1 is not `principal secret`"):
        parse([f"--credentials={tmp_path}/c"], {})
    (tmp_path / "c").write_text("# nothing\n")
    with pytest.raises(FlagError, match="holds no principal/secret pair"):
        parse([f"--credentials={tmp_path}/c"], {})


def test_max_layer_size_reaches_the_provisioner(tmp_path):
    from corral.agent.containerizer import containerizer_args
    assert parse([], {}).max_layer_size == 16 << 30
    flags = parse([f"--work_dir={tmp_path}", "--image_providers=docker", "--max_layer_size=64MB"], {})
    assert containerizer_args(flags, Resources.parse("cpus:1"))["provisioner"].flags.max_layer_size == 64 << 20
    with pytest.raises(FlagError, match=r"^--max_layer_size=0: invalid size '0'"):
        parse(["--max_layer_size=0"], {})


def test_confinement_flags(tmp_path):
    (tmp_path / "mine.json").write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    flags = parse(['--bounding_capabilities={"capabilities": ["NET_RAW", "CAP_SYS_ADMIN", "chown"]}',
                   '--effective_capabilities={"capabilities": ["NET_RAW"]}',
                   f"--seccomp_config_dir={tmp_path}", "--seccomp_profile_name=mine.json",
                   '--allowed_devices={"allowed_devices": [{"device": {"path": "/dev/loop-control"}, '
                   '"access": {"read": true}}]}', "--cgroups_pids_limit=100"], {})
    assert flags.bounding_capabilities == ["CHOWN", "NET_RAW", "SYS_ADMIN"]
    assert flags.effective_capabilities == ["NET_RAW"]
    assert (flags.seccomp_config_dir, flags.seccomp_profile_name) == (str(tmp_path), "mine.json")
    assert [d.rule() for d in flags.allowed_devices] == ["c 10:237 r"] and flags.cgroups_pids_limit == 100


def test_directories_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flags = parse(["--work_dir=w", "--runtime_dir=./r"], {})
    assert (flags.work_dir, flags.runtime_dir) == (str(tmp_path / "w"), str(tmp_path / "r"))
