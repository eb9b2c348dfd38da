"""The Docker containerizer passes the confinement requests on to dockerd: capabilities, seccomp,
the pids limit, ulimits, devices, privileged; checked in dockerd's record and from inside."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.parametrize("docker_env", ["socket"], indirect=True)

STATUS = "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; ulimit -n; ulimit -Hn; ls -l /dev/lc"


def fields(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def run(docker_env, container_id: str, **config) -> tuple[str, dict]:
    dc = docker_env.sync()
    dc.launch(container_id, docker_env.config("sh", "-c", STATUS, **config))
    try:
        dc.wait(container_id)
        host = json.loads(docker_env.dockerd.docker("inspect", f"corral-{container_id}").stdout)[0]["HostConfig"]
        out = docker_env.dockerd.docker("logs", f"corral-{container_id}").stdout
    finally:
        dc.destroy(container_id, remove_sandbox=True)
    return out, host


def test_requests_reach_dockerd(docker_env, tmp_path):
    profile = tmp_path / "allow.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    out, host = run(docker_env, "confined", cap_drop=["ALL"], cap_add=["NET_RAW"], pids_limit=30,
                    rlimits=[{"type": "RLMT_NOFILE", "soft": 100, "hard": 200}], seccomp_profile=str(profile),
                    devices=["/dev/loop-control:/dev/lc:r"])
    assert (host["CapDrop"], host["CapAdd"], host["PidsLimit"]) == (["ALL"], ["NET_RAW"], 30)
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 100, "Hard": 200}]
    assert host["Devices"] == [{"PathOnHost": "/dev/loop-control", "PathInContainer": "/dev/lc",
                                "CgroupPermissions": "r"}]
    assert host["SecurityOpt"][0].startswith("seccomp=")
    status = fields(out)
    assert int(status["CapEff"], 16) == 1 << 13 and status["Seccomp"] == "2"
    assert "100\n200\n" in out and "/dev/lc" in out


def test_mesos_capabilities_and_privileged(docker_env):
    out, host = run(docker_env, "sets", effective_capabilities=["CHOWN", "KILL"])
    assert (host["CapDrop"], host["CapAdd"]) == (["ALL"], ["CHOWN", "KILL"])
    assert int(fields(out)["CapEff"], 16) == 1 << 0 | 1 << 5



def test_privileged(docker_env):
    from corral.containerizers.docker.create import confinement
    assert confinement(docker_env.config("true", privileged=True)) == {"Privileged": True}
    with open("/proc/self/status") as f:
        bounding = int(fields(f.read())["CapBnd"], 16)
    with open("/proc/sys/kernel/cap_last_cap") as f:
        if bounding != (1 << int(f.read()) + 1) - 1:
            pytest.skip("this host's bounding set lacks a capability: runc cannot start a privileged container")
    out, host = run(docker_env, "privileged", privileged=True)
    assert host["Privileged"] is True and fields(out)["Seccomp"] == "0"
