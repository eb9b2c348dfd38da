#!/usr/bin/env bash
# Set up corral on a fresh Debian/Ubuntu host, as root: system packages, the virtual
# environment in .venv, corral installed into it, bytecode compiled. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (corral uses cgroups and namespaces)" >&2; exit 1; }

# python3-dev, libcap-dev: python-prctl builds against them. libseccomp2: pyseccomp compiles seccomp profiles with it. busybox-static, runc, crun: the benchmarks' peers
# and their rootfs. docker-registry, skopeo, umoci, openssl: the provisioner's tests (a real
# registry, images built without an engine, signed tokens) and its benchmark. docker.io, iproute2,
# procps: the docker containerizer's tests start a private dockerd (no daemon is left running).
# user-mode-linux, e2fsprogs: the pure cgroup2 guest that .ci/run runs the cgroup tests in.
PACKAGES=(python3-dev libcap-dev libseccomp2 busybox-static runc crun python3-venv docker-registry skopeo umoci openssl docker.io iproute2 procps
          user-mode-linux e2fsprogs)
# Where ../shared/mesos holds a Mesos build (beside this checkout, or beside the main checkout of a
# git worktree), the libraries its master, agent and mesos-execute need: tests/mesos run them.
MAIN=$(dirname "$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null || echo "$PWD/.git")")
if [ -e ../shared/mesos/mesos-1.11.1-debian12-amd64.tar.zst ] || [ -e "$MAIN/../shared/mesos/mesos-1.11.1-debian12-amd64.tar.zst" ]; then
    PACKAGES+=(zstd libapr1 libaprutil1 libarchive13 libcurl4 libgrpc++1.51 libleveldb1d libprotobuf32 libsasl2-2
               libsvn1 libunwind8 libzookeeper-mt2 libabsl20220623)
fi
missing=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The interpreter: the distribution's python3 where it is 3.11 or newer (Debian's is a static build
# with PGO and LTO: every corral command starts and runs ~10% quicker than on a shared-library build
# such as pyenv's), else python3 on PATH; PYTHON=... chooses another. An existing .venv is kept.
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && PYTHON=/usr/bin/python3
fi
# A pyenv shim would put its own start-up in front of every corral command: use the real interpreter.
PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)')
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "setup.sh: corral needs Python 3.11+" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# Every version, the build's setuptools included, comes from constraints.txt (scripts/lock.sh
# refreshes it, on purpose): the same install on every machine and in CI.
export PIP_CONSTRAINT="$PWD/constraints.txt" PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/python -m pip install -q --upgrade pip
# strict mode: site-packages gets a static .pth to a tree of links (build/__editable__.*) that
# holds the one package `corral` and nothing else; no import hook on any start of `corral`.
# A new module needs this script run again, to be linked. (The notice that strict mode prints
# on every install is silenced: it says what this comment says.)
PYTHONWARNINGS='ignore:Editable installation' .venv/bin/python -m pip install -q -e '.[test]' --config-settings editable_mode=strict
# Compiled once here, so that no `corral` run compiles (or, with PYTHONDONTWRITEBYTECODE, recompiles)
# sources: the link tree that `corral` imports from (-I: not this checkout, which holds corral/ too).
.venv/bin/python -m compileall -q "$(.venv/bin/python -I -c 'import corral, os; print(os.path.dirname(corral.__file__))')"
# The `corral` command: pip's console script (corral.cli:main), but started without the site
# module (-S), which costs every start ~3 ms (pyvenv.cfg, the .pth files, setuptools' distutils
# hack among them), a tenth of a cold `corral exec`. The paths site would put on sys.path
# (site-packages, the link tree) are written into it here; pip's install above wrote pip's.
.venv/bin/python -I - <<'EOF'
import os, subprocess
python = os.path.abspath(".venv/bin/python")
def path(*flags):
    return subprocess.check_output([python, "-I", *flags, "-c", "import sys; print(*sys.path, sep='\\n')"], text=True).split("\n")
with_site, without = path(), path("-S")
added = [p for p in with_site if p and p not in without]
with open(".venv/bin/corral.tmp", "w") as f:
    f.write(f"#!{python} -S\n"
            "# corral's command, written by scripts/setup.sh: corral.cli:main without the site\n"
            "# module; the paths that site would add are these.\n"
            f"import sys\nsys.path += {added!r}\nfrom corral.cli import main\nsys.exit(main())\n")
os.chmod(".venv/bin/corral.tmp", 0o755)
os.rename(".venv/bin/corral.tmp", ".venv/bin/corral")
EOF
# A busybox image from the host's static busybox, for hosts without a registry (the tar store).
.venv/bin/python -m corral.provisioner.localimage /var/lib/corral/images >/dev/null
echo "corral is set up: .venv/bin/corral; a busybox image is in /var/lib/corral/images"
