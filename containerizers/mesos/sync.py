"""The Mesos containerizer's work, as plain blocking calls over the files of each container:
what is its own beside SyncContainerizer (containerizers/base.py), which owns the rest.

`MesosContainerizer` (containerizer.py) is the asyncio face of this class; the CLI uses this class
directly, because importing asyncio alone costs 60-90 ms on a small host, more than runc's whole launch.
"""

from __future__ import annotations

import os
import pwd
import signal
import time

from corral import linux
from corral.record import Record
from corral.types import (DEFAULT_PATH, LAUNCHED, ContainerConfig, CorralError, ExecConfig, InvalidInput,
                          Limitation, Resources)
from corral.isolators import IsolatorFlags, LaunchInfo
from corral.isolators.registry import CONFINEMENT, DEFAULT_ISOLATION, create_isolators

from .. import state
from ..base import Capabilities, End, SyncContainerizer
from .launcher import Launcher
from .supervisor import LaunchSpec
from .waiter import Waiter


class SyncMesosContainerizer(SyncContainerizer):
    name = "mesos"
    # The host's network (for now): bridge networks and port mappings are docker's.
    capabilities = Capabilities(images=True, exec=True, io=True)

    def __init__(self, work_dir: str, runtime_dir: str, cgroups_root: str = "corral",
                 isolation: list[str] | tuple[str, ...] = DEFAULT_ISOLATION,
                 cgroups_enable_cfs: bool = False, tracking: str | None = None, provisioner=None,
                 **isolator_flags):
        """`isolator_flags`: further IsolatorFlags fields (the network/ports isolator's, say)."""
        super().__init__(work_dir, runtime_dir)
        self.runtime_dir = runtime_dir
        self.flags = IsolatorFlags(cgroups_root=cgroups_root, cgroups_enable_cfs=cgroups_enable_cfs,
                                   work_dir=work_dir, runtime_dir=runtime_dir, **isolator_flags)
        self.isolation = list(isolation)
        self.launcher = Launcher(cgroups_root, tracking)
        self.flags.launcher_tracking = self.launcher.tracking
        self._isolators: dict[tuple[str, ...], list] = {}
        self._provisioner = provisioner

    @property
    def provisioner(self):
        """The image provisioner, made on first use: containers without images never import it."""
        if self._provisioner is None:
            from corral.provisioner import Provisioner
            self._provisioner = Provisioner(self.work_dir)
        return self._provisioner

    # -- helpers ---------------------------------------------------------------------------

    def isolators(self, names) -> list:
        key = tuple(names)
        if key not in self._isolators:
            self._isolators[key] = create_isolators(list(key), self.flags)
        return self._isolators[key]

    def _isolators_of(self, files: state.ContainerFiles) -> list:
        return self.isolators(files.config().isolation)

    # -- launch ----------------------------------------------------------------------------

    def _prepare(self, config: ContainerConfig) -> ContainerConfig:
        config.isolation = self._isolation_for(config)
        self.isolators(config.isolation)        # unknown names fail before anything exists
        if config.rootfs and not os.path.isdir(config.rootfs):
            raise InvalidInput(f"root filesystem {config.rootfs} is not a directory")
        if (not config.rootfs and not config.image and config.workdir and os.path.isabs(config.workdir)
                and not os.path.isdir(config.workdir)):
            raise InvalidInput(f"workdir {config.workdir} is not a directory")
        return config

    def _start(self, files: state.ContainerFiles, config: ContainerConfig, record: dict) -> str:
        container_id = files.container_id
        isolators = self.isolators(config.isolation)
        identity = None if config.image else _host_identity(config.user)
        prepared, forked = [], None
        try:
            rootfs_mount = None
            if config.image:
                config, identity, rootfs_mount = self._from_image(container_id, config)
            if identity:
                os.chown(files.sandbox, identity.uid, identity.gid)
            launch_info = LaunchInfo(rootfs_mount=rootfs_mount)
            for isolator in isolators:
                prepared.append(isolator)
                launch_info.merge(isolator.prepare(container_id, config))
            spec = self._launch_spec(files, config, launch_info, identity)

            def meanwhile():
                for isolator in isolators:
                    isolator.forked(container_id)
            forked = self.launcher.fork(container_id, spec, meanwhile)
            if spec.exec_socket is None:
                # What an exec that joins it from outside gets: written while init sets itself up
                # (no exec starts before pids.json names init), not on the way to the fork.
                from .nsenter import session_record
                files.write(state.EXEC_RECORD, session_record(spec))
            files.write("pids.json", {
                "supervisor": {"pid": forked.supervisor_pid, "start": linux.process_start_time(forked.supervisor_pid),
                               "ended_fd": forked.ended_fd},
                "init": {"pid": forked.init_pid, "start": linux.process_start_time(forked.init_pid)},
            })
            try:
                for isolator in isolators:
                    isolator.isolate(container_id, forked.init_pid)
            except ProcessLookupError:
                pass        # init ended already (its set-up failed, as it reported): nothing to place
            forked.release()
        except BaseException:
            if forked is not None:
                forked.abort()
            self._teardown(container_id, prepared, image=config.image)
            raise
        return LAUNCHED

    def _from_image(self, container_id: str, config: ContainerConfig):
        """Provision the image's rootfs; the config to launch (the image's Entrypoint, Cmd, Env,
        WorkingDir and User merged in, as Mesos does), who runs it, and the rootfs's mount."""
        from corral.provisioner import image_user, merge_command
        image = config.image
        info = self.provisioner.provision(container_id, image["name"], image.get("type", "docker").lower())
        command = merge_command(info.image_config, value=config.argv[0] if config.argv else None,
                                arguments=config.argv, env=config.env, workdir=config.workdir, user=config.user)
        identity = None
        if command.user:
            uid, gid = image_user(info.layers, command.user)
            identity = Identity(uid=uid, gid=gid, groups=(gid,), name=command.user, home="/")
        launch = ContainerConfig.from_dict({**config.to_dict(), "argv": command.argv, "env": command.env,
                                            "workdir": command.workdir, "rootfs": info.rootfs,
                                            "image_labels": (info.image_config or {}).get("Labels") or {}})
        return launch, identity, info.rootfs_mount

    def _isolation_for(self, config: ContainerConfig) -> list[str]:
        """The isolators a container gets: those asked for (or the default), plus what its
        options imply: a hostname needs a UTS namespace, a root filesystem filesystem/linux;
        a privileged container, none of the confinement isolators."""
        names = [name for name in config.isolation or self.isolation
                 if not (config.privileged and name in CONFINEMENT)]
        implied = (("namespaces/uts", config.hostname),
                   ("filesystem/linux", config.rootfs or config.image or config.volumes))
        return names + [name for name, wanted in implied if wanted and name not in names]

    def _launch_spec(self, files, config: ContainerConfig, launch_info: LaunchInfo,
                     identity: "Identity | None") -> LaunchSpec:
        env = {"PATH": DEFAULT_PATH, "HOME": identity.home if identity else "/root",
               "MESOS_SANDBOX": files.sandbox}
        if identity:
            env["USER"] = env["LOGNAME"] = identity.name
        env.update(config.env)
        env.update(launch_info.env)
        sandbox = launch_info.working_dir or files.sandbox     # as the task sees it
        return LaunchSpec(
            argv=config.argv, env=env,
            cwd=os.path.join(sandbox, config.workdir or ""),
            rootfs=launch_info.rootfs, rootfs_mount=launch_info.rootfs_mount,
            mounts=launch_info.mounts, symlinks=launch_info.symlinks,
            stdout_path=files.stdout, stderr_path=files.stderr,
            status_path=files.path("status.json"),
            namespaces=frozenset(launch_info.namespaces), hostname=launch_info.hostname,
            uid=identity.uid if identity else None, gid=identity.gid if identity else None,
            groups=identity.groups if identity else (),
            confinement=_steps(launch_info.confinement),
            io=_io_spec(files, config),
            exec_socket=None if launch_info.confinement and not launch_info.confinement.init_serves_exec
            else files.path(state.EXEC_SOCKET),
            cgroups=launch_info.cgroups,
        )

    # -- attach ----------------------------------------------------------------------------

    def attach(self, container_id: str):
        """A switchboard.Attachment to the container's supervisor; None for a container that
        holds no I/O of its own (its task writes its files). CorralError once it has ended."""
        files = self.files(container_id)
        config = files.config()
        if not (config.stdin or config.tty or config.log_max_size):
            return None
        from .switchboard import SOCKET, Attachment
        try:
            return Attachment(files.path(SOCKET))
        except (FileNotFoundError, ConnectionRefusedError):
            if files.termination() is None and files.exists() and self.supervisor_alive(files):
                raise
            raise CorralError(f"container {container_id} has ended: nothing to attach to") from None

    # -- exec ------------------------------------------------------------------------------

    def _exec(self, files: state.ContainerFiles, config: ExecConfig, stdio: tuple[int, int, int]):
        from .exec import start
        return start(files, self.launcher.cgroups_root, config, stdio)

    # -- watching the end ------------------------------------------------------------------

    def waiter(self, container_id: str) -> "Waiter":
        return Waiter(self, self.files(container_id))

    def supervisor_alive(self, files: state.ContainerFiles) -> bool:
        """Whether the supervisor still runs: one that has exited (a zombie its parent has not
        reaped yet) has written the task's end, and nothing more can reach the task."""
        sup = files.pids().get("supervisor", {})
        return linux.is_running(sup.get("pid"), sup.get("start"))

    _running = supervisor_alive

    def _end(self, files: state.ContainerFiles) -> End:
        status = files.status()
        if status is None:
            return End(None, message="the container's supervisor died before it recorded the exit status")
        raw = status["task_status"] if status["task_status"] is not None else status["init_status"]
        return End(raw, error=status.get("error"), ended=status.get("task_ended"))

    def _limitation(self, files: state.ContainerFiles) -> Limitation | None:
        return next(filter(None, (i.limitation(files.container_id) for i in self._isolators_of(files))), None)

    def _signal(self, files: state.ContainerFiles, sig: int) -> None:
        """init forwards catchable signals to the task. SIGKILL and SIGSTOP, which init cannot pass
        on, go to every process of the container, and SIGCONT too, to undo a STOP."""
        container_id = files.container_id
        if sig == signal.SIGKILL:
            self.launcher.kill_all(container_id)
            return
        if sig in (signal.SIGSTOP, signal.SIGCONT):
            pids = self.launcher.pids(container_id)
        else:
            pids = [files.pids()["init"]["pid"]]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def end(self, container_id: str, limitation: Limitation | None = None) -> None:
        """Start ending the container: record why, then SIGKILL every process."""
        files = self.files(container_id)
        if files.termination() is None:
            files.record_kill(signal.SIGKILL, *((limitation.reason, limitation.message) if limitation else ()))
        self.launcher.kill_all(container_id)

    def _release(self, files: state.ContainerFiles) -> None:
        try:
            config = files.config()
        except FileNotFoundError:
            return          # a launch cut short right after claiming the id: nothing else of it exists
        self._teardown(files.container_id, self.isolators(config.isolation), image=config.image)
        # A waiter saw the end when the supervisor reported it (supervisor.Ended), maybe before
        # its exit: the destroy is done once nothing of the container is left, the supervisor too.
        self.launcher.await_exit(files.pids().get("supervisor"))

    def _teardown(self, container_id: str, isolators: list, image: dict | None = None) -> None:
        """Kill what is left, undo the isolators in reverse order, then remove the image's rootfs;
        tolerate what never existed."""
        errors = []
        try:
            self.launcher.kill_all(container_id)
        except OSError as e:
            errors.append(e)
        for isolator in reversed(isolators):
            try:
                isolator.cleanup(container_id)
            except OSError as e:
                errors.append(e)
        try:
            self.launcher.cleanup(container_id)
            if image:
                self.provisioner.destroy(container_id)
        except (OSError, CorralError) as e:
            errors.append(e)
        if errors:
            raise CorralError(f"cleanup of container {container_id} incomplete: {errors[0]}")

    # -- the rest of the interface ---------------------------------------------------------

    def update(self, container_id: str, resources: Resources) -> None:
        files = self.files(container_id)
        for isolator in self._isolators_of(files):
            isolator.update(container_id, resources)

    def usage(self, container_id: str) -> dict:
        import psutil
        files = self.files(container_id)
        pids = self.launcher.pids(container_id)
        threads = 0
        for pid in pids:
            try:
                threads += psutil.Process(pid).num_threads()
            except psutil.Error:
                pass
        stats = {"timestamp": time.time(), "processes": len(pids), "threads": threads}
        for isolator in self._isolators_of(files):
            stats.update(isolator.usage(container_id))
        return stats

    def _state(self, files: state.ContainerFiles, ended: bool) -> tuple[str, int | None]:
        pids = files.pids()
        pid = pids.get("init", {}).get("pid")
        if ended or (pids and not self.supervisor_alive(files)):
            return "EXITED", pid
        return ("RUNNING" if pids else "STARTING"), pid

    def recover(self) -> list[str]:
        """Known containers stay as they are (running or ended); cgroups of containers that no
        runtime dir knows, and containers whose launch never got as far as its pids, go."""
        known = []
        for container_id in self.containers():
            files = state.ContainerFiles(self.runtime_dir, self.work_dir, container_id)
            if not files.pids() and files.termination() is None:
                self.destroy(container_id, remove_sandbox=True)     # cut short mid-launch: nothing ran
                continue
            known.append(container_id)
        for orphan in self.launcher.container_ids() - set(known):
            self._teardown(orphan, self.isolators(self.isolation))
        if os.path.isdir(os.path.join(self.work_dir, "provisioner")):
            self.provisioner.recover(known)           # rootfses of containers no one knows
        return known


def _steps(confinement):
    """The confinement made ready for init (corral.confine.steps); its module (ctypes' seccomp
    and capability set-up) is imported only for a container that has one, not a privileged one."""
    if confinement is None:
        return None
    from corral.confine import steps
    return steps(confinement)


def _io_spec(files: state.ContainerFiles, config: ContainerConfig):
    """What the supervisor holds of the task's I/O (a switchboard.IOSpec): nothing (the task
    writes its files itself) unless the container asked for stdin, a tty or a log cap."""
    if not (config.stdin or config.tty or config.log_max_size):
        return None
    from .switchboard import DEFAULT_WINDOW, SOCKET, IOSpec
    return IOSpec(socket_path=files.path(SOCKET), stdin=config.stdin, tty=config.tty,
                  window=tuple(config.window) if config.window else DEFAULT_WINDOW, wait_for_client=config.attach,
                  log_max_size=config.log_max_size, log_max_files=config.log_max_files)


class Identity(Record):
    """Who the task runs as."""
    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str
    home: str


def _host_identity(name: str | None) -> Identity | None:
    """--user on the host's filesystem: a name or uid from the host's passwd."""
    if not name:
        return None
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        raise InvalidInput(f"no such user: {name}") from None
    return Identity(uid=entry.pw_uid, gid=entry.pw_gid, groups=tuple(os.getgrouplist(entry.pw_name, entry.pw_gid)),
                    name=entry.pw_name, home=entry.pw_dir)
