"""linux/seccomp: a seccomp filter on the task, from a profile in Docker's (or OCI's) JSON format.

The default profile (seccomp_default.json) has the effect of Docker's: an allow-list, EPERM for
the rest. A container may name a profile file (the CLI's --seccomp-profile), or a profile in
the agent's --seccomp_config_dir (Mesos's LinuxInfo.seccomp.profile_name); "unconfined" means
no filter. The agent's --seccomp_profile_name is the default of its containers.

libseccomp (through pyseccomp) compiles a profile to BPF once per profile and capability set,
and seccomp_bpf.compact() rewrites its program a fifth as long, with the same answers (the
kernel's load of a filter, in every container's init, costs by its length; compact() checks
the rewrite answers every call as libseccomp's does, else keeps libseccomp's); the program is
kept in memory and in the runtime dir (a later `corral run` reads it back
without loading libseccomp), and init loads it with one prctl before the exec. The compiling
itself runs in a child process: libseccomp never loads into the launching one.
"""

from __future__ import annotations

import json
import os

from corral.files import write_atomic
from corral.types import CorralError, InvalidInput

from . import Isolator, LaunchInfo

DEFAULT_PROFILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seccomp_default.json")
UNCONFINED = "unconfined"
_COMPILER = b"corral-seccomp-4"     # part of the cache key: change it when compile_profile's output changes
                                    # (4: compact() checks its rewrite, so none cached unchecked is taken)

# Go's architecture names (Docker's "arches" conditions) and libseccomp's, by uname's machine.
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "riscv64": "riscv64", "s390x": "s390x", "ppc64le": "ppc64le"}
_SCMP_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64", "riscv64": "SCMP_ARCH_RISCV64",
              "s390x": "SCMP_ARCH_S390X", "ppc64le": "SCMP_ARCH_PPC64LE"}
_ACTIONS = ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_TRAP", "SCMP_ACT_LOG", "SCMP_ACT_TRACE")
_OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ")


# What a container's init calls to serve an exec (containerizers/mesos/execserver.py) beyond
# what it calls to start the task, by machine: its audit architecture and the calls' numbers.
_SERVING_CALLS = {
    "x86_64": (0xC000003E, {"accept4": 288, "recvmsg": 47, "sendmsg": 46, "poll": 7, "pipe2": 293, "fcntl": 72,
                            "dup2": 33}),
    "aarch64": (0xC00000B7, {"accept4": 242, "recvmsg": 212, "sendmsg": 211, "ppoll": 73, "pipe2": 59, "fcntl": 25,
                             "dup3": 24}),
}
_SECCOMP_RET_ALLOW = 0x7fff0000


def serving_allowed(program: bytes) -> bool:
    """Whether a filter lets init serve execs: it allows each of _SERVING_CALLS (with zero
    arguments: no profile conditions these on theirs). Where it does not, init does not serve
    (a call denied would fail the exec, a call that kills would end the container), and an exec
    joins the container from outside instead. Unknown machines: no."""
    from .seccomp_bpf import run, unpack
    arch, calls = _SERVING_CALLS.get(os.uname().machine, (None, {}))
    if arch is None:
        return False
    insns = unpack(program)
    return all(run(insns, [nr, arch] + [0] * 14)[0] == _SECCOMP_RET_ALLOW for nr in calls.values())


def profile_path(name: str | None, config_dir: str | None) -> str | None:
    """The file a profile name means: None for unconfined, the default for None; a relative name
    is in `config_dir` (Mesos's rule) and may not leave it."""
    if name == UNCONFINED:
        return None
    if name is None:
        return DEFAULT_PROFILE
    if os.path.isabs(name):
        return name
    if not config_dir:
        raise InvalidInput(f"seccomp profile {name!r}: a profile name needs the agent's --seccomp_config_dir")
    if "/" in name or name in ("", ".", ".."):
        raise InvalidInput(f"seccomp profile {name!r}: a name in --seccomp_config_dir, without '/'")
    return os.path.join(config_dir, name)


def read_profile(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InvalidInput(f"seccomp profile {path}: {e.strerror}") from None


def _condition_holds(condition: dict | None, caps: frozenset, arch: str, include: bool) -> bool:
    """Docker's `includes` (every one holds) and `excludes` (none holds) of one rule."""
    if not condition:
        return True
    found = []
    if condition.get("caps"):
        held = [c.upper().removeprefix("CAP_") in caps for c in condition["caps"]]
        found.append(all(held) if include else any(held))
    if condition.get("arches"):
        found.append(arch in condition["arches"])
    if condition.get("minKernel"):
        found.append(_kernel_at_least(str(condition["minKernel"])))
    return all(found) if include else not any(found)


def _kernel_at_least(version: str) -> bool:
    def numbers(text):
        return tuple(int(p) for p in text.split("-")[0].split(".")[:2] if p.isdigit())
    return numbers(os.uname().release) >= numbers(version)


def compile_profile(raw: bytes, caps: frozenset, where: str) -> bytes:
    """The BPF program (struct sock_filter[]) of a profile, for a container with capabilities `caps`."""
    from .seccomp_bpf import compact
    return compact(libseccomp_program(raw, caps, where))


def libseccomp_program(raw: bytes, caps: frozenset, where: str) -> bytes:
    """The program libseccomp compiles from a profile, for a container with capabilities `caps`."""
    import pyseccomp as sc
    try:
        profile = json.loads(raw)
    except ValueError as e:
        raise InvalidInput(f"seccomp profile {where}: not JSON: {e}") from None
    if not isinstance(profile, dict) or profile.get("defaultAction") not in _ACTIONS:
        raise InvalidInput(f"seccomp profile {where}: \"defaultAction\" must be one of {', '.join(_ACTIONS)}")
    default_errno = profile.get("defaultErrnoRet", 1)

    def action(name, errno_ret):
        if name not in _ACTIONS:
            raise InvalidInput(f"seccomp profile {where}: unknown action {name!r}")
        if not isinstance(errno_ret, int) or not 0 <= errno_ret < 4096:
            raise InvalidInput(f"seccomp profile {where}: errnoRet must be an errno number, not {errno_ret!r}")
        return {"SCMP_ACT_ALLOW": sc.ALLOW, "SCMP_ACT_ERRNO": sc.ERRNO(errno_ret), "SCMP_ACT_KILL": sc.KILL,
                "SCMP_ACT_KILL_THREAD": sc.KILL_THREAD, "SCMP_ACT_KILL_PROCESS": sc.KILL_PROCESS,
                "SCMP_ACT_TRAP": sc.TRAP, "SCMP_ACT_LOG": sc.LOG, "SCMP_ACT_TRACE": sc.TRACE(errno_ret)}[name]

    machine = os.uname().machine
    default = action(profile["defaultAction"], default_errno)
    seccomp_filter = sc.SyscallFilter(default)
    try:
        # A binary tree of the calls rather than a list: the kernel's load (which evaluates the
        # filter for every call number to cache the answers) takes half the time, as do calls.
        seccomp_filter.set_attr(sc.Attr.CTL_OPTIMIZE, 2)
    except OSError:
        pass            # a libseccomp before 2.5: the list
    arches = set(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if isinstance(entry, dict) and entry.get("architecture") == _SCMP_ARCH.get(machine):
            arches |= set(entry.get("subArchitectures") or [])
    for arch in arches - {_SCMP_ARCH.get(machine)}:
        number = getattr(sc.Arch, str(arch).removeprefix("SCMP_ARCH_"), None)
        if number is None:
            raise InvalidInput(f"seccomp profile {where}: unknown architecture {arch!r}")
        try:
            seccomp_filter.add_arch(number)
        except OSError:
            pass        # a foreign architecture this libseccomp cannot add: its calls fail as bad arch
    rules = profile.get("syscalls") or []
    if not isinstance(rules, list):
        raise InvalidInput(f"seccomp profile {where}: \"syscalls\" must be a list")
    for rule in rules:
        if not isinstance(rule, dict):
            raise InvalidInput(f"seccomp profile {where}: each of \"syscalls\" must be an object")
        rule_action = action(rule.get("action"), rule.get("errnoRet", default_errno))
        if not (_condition_holds(rule.get("includes"), caps, _GO_ARCH.get(machine, machine), True)
                and _condition_holds(rule.get("excludes"), caps, _GO_ARCH.get(machine, machine), False)):
            continue
        args = []
        for arg in rule.get("args") or []:
            if not isinstance(arg, dict) or arg.get("op") not in _OPS or not isinstance(arg.get("index"), int):
                raise InvalidInput(f"seccomp profile {where}: bad argument condition {arg!r}")
            op = getattr(sc, arg["op"].removeprefix("SCMP_CMP_"))
            args.append(sc.Arg(arg["index"], op, int(arg.get("value", 0)), int(arg.get("valueTwo", 0))))
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InvalidInput(f"seccomp profile {where}: \"names\" must be a list of system call names")
        if rule_action == default:
            continue         # libseccomp refuses a rule that changes nothing
        for name in names:
            try:
                seccomp_filter.add_rule(rule_action, name, *args)
            except OSError:
                pass         # a call this architecture or libseccomp does not know, as Docker skips it
    import tempfile
    with tempfile.TemporaryFile() as out:
        seccomp_filter.export_bpf(out)
        out.seek(0)
        return out.read()


def _compiled_apart(raw: bytes, caps: frozenset, where: str) -> bytes:
    """compile_profile() in a child process, its answer or its error: libseccomp, pyseccomp and
    what they import (ctypes.util, subprocess, threading, typing: ~2.6 MB) stay out of the
    launching process, which lives on and forks each launch's supervisor (every page it holds is a
    page table entry each fork copies). A process with threads, which must not fork, compiles here."""
    if len(os.listdir("/proc/self/task")) > 1:
        return compile_profile(raw, caps, where)
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            import gc
            gc.disable()            # a collection would copy the parent's pages it walks
            os.close(read_fd)
            try:
                answer = b"+" + compile_profile(raw, caps, where)
            except BaseException as e:  # noqa: BLE001 - raised again in the parent
                import pickle
                answer = b"!" + pickle.dumps(e)     # unpicklable: nothing sent, the parent says so
            with open(write_fd, "wb") as out:
                out.write(answer)
        finally:
            os._exit(0)
    os.close(write_fd)
    with open(read_fd, "rb") as answer_from:
        answer = answer_from.read()
    try:
        os.waitpid(child, 0)
    except ChildProcessError:
        pass            # reaped already: the launch server ignores SIGCHLD
    if answer[:1] == b"+":
        return answer[1:]
    if answer[:1] == b"!":
        import pickle
        try:
            error = pickle.loads(answer[1:])
        except Exception:  # noqa: BLE001 - an error that cannot be rebuilt here
            error = None
        if isinstance(error, BaseException):
            raise error
    raise CorralError(f"seccomp profile {where}: compiling it failed (in a child process)")


class SeccompIsolator(Isolator):

    def __init__(self, flags):
        super().__init__(flags)
        # (path, mtime, size, caps) -> the launch info with the program: made once, handed to each launch
        # (the default profile's key: (path, caps))
        self._launch_infos: dict[tuple, LaunchInfo] = {}
        self._agents_caps: frozenset | None = None

    def prepare(self, container_id, config):
        name = config.seccomp_profile or self.flags.seccomp_profile_name
        path = profile_path(name, self.flags.seccomp_config_dir)
        if path is None:
            return None
        caps = self._capabilities(config)
        if path == DEFAULT_PROFILE:
            key = (path, caps)      # corral's own: it changes only with the code that reads it
        else:
            try:
                st = os.stat(path)
            except OSError as e:
                raise InvalidInput(f"seccomp profile {path}: {e.strerror}") from None
            key = (path, st.st_mtime_ns, st.st_size, caps)
        info = self._launch_infos.get(key)
        if info is None:
            from corral.confine import Confinement
            program = self._cached(read_profile(path), caps, path)
            info = self._launch_infos[key] = LaunchInfo(confinement=Confinement(
                seccomp_filter=program, init_serves_exec=serving_allowed(program)))
        return info

    def _capabilities(self, config) -> frozenset:
        """The container's bounding capabilities: what the profile's conditions test, as Docker's."""
        from .capabilities import ALL, asks_for_capabilities, resolve
        if "linux/capabilities" not in config.isolation:
            return ALL
        if asks_for_capabilities(config):
            return resolve(config, self.flags)[0]
        if self._agents_caps is None:
            self._agents_caps = resolve(config, self.flags)[0]
        return self._agents_caps

    def _cached(self, raw: bytes, caps: frozenset, where: str) -> bytes:
        """From the runtime dir's cache, else compiled there. A cached program is keyed by all it
        depends on (the profile's bytes, the capabilities, the kernel for minKernel, the machine,
        this compiler), and the file holds the whole key: a name that collides is never taken
        for another's program. (zlib: hashlib would cost a cold `corral run` 3 ms of OpenSSL.)"""
        import zlib
        uname = os.uname()
        key = b"\0".join([_COMPILER, ",".join(sorted(caps)).encode(), uname.release.encode(),
                          uname.machine.encode(), raw])
        cache = os.path.join(self.flags.runtime_dir, "seccomp", f"{zlib.crc32(key):08x}-{len(key)}.bpf")
        header = len(key).to_bytes(8, "little") + key
        try:
            with open(cache, "rb") as f:
                cached = f.read()
            if cached.startswith(header):
                return cached[len(header):]
        except FileNotFoundError:
            pass
        program = _compiled_apart(raw, caps, where)
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        write_atomic(cache, header + program)
        return program
