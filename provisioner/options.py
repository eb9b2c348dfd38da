"""The provisioner's options, by their Mesos flag names, for the CLI's parsers.

A module of its own, importing nothing of the provisioner: `corral run` builds these options on
every launch, image or not, and the provisioner's code costs a cold run ~8 ms more.
"""

from __future__ import annotations

import argparse
import os

DEFAULT_DOCKER_REGISTRY = "https://registry-1.docker.io"
DEFAULT_MAX_LAYER_SIZE = 16 << 30
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """'16G', '512M', '1048576' (bytes; K, M, G, T are powers of 1024, a trailing B or iB allowed)."""
    raw = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (raw[:-1], raw[-1]) if raw[-1:] in _UNITS else (raw, "")
    if not number.isdigit() or not 0 < int(number) * _UNITS[unit] < 1 << 63:
        raise ValueError(f"invalid size {text!r}: use bytes or a size such as 512M or 16G")
    return int(number) * _UNITS[unit]


def _size_option(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_options(parser: argparse.ArgumentParser, defaults: bool = True) -> None:
    """The provisioner's flags, by their Mesos names; each has a CORRAL_* environment default."""
    env = os.environ.get
    value = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    registry = env("CORRAL_DOCKER_REGISTRY", DEFAULT_DOCKER_REGISTRY)
    parser.add_argument("--docker-registry", default=value(registry),
                        help="registry URL or host[:port], or a directory of docker-save tarballs "
                             "(<dir>/<name>:<tag>.tar) (env CORRAL_DOCKER_REGISTRY)")
    parser.add_argument("--docker-insecure-registry", action="append", default=value([]), metavar="HOST:PORT",
                        help="reach this registry over plain http (repeatable; localhost always is)")
    parser.add_argument("--docker-config", default=value(env("CORRAL_DOCKER_CONFIG")), metavar="PATH",
                        help="a docker config.json with registry credentials (env CORRAL_DOCKER_CONFIG)")
    parser.add_argument("--appc-store-dir", default=value(env("CORRAL_APPC_STORE_DIR")), metavar="DIR",
                        help="a directory of .aci images")
    parser.add_argument("--appc-simple-discovery-uri-prefix", default=value(env("CORRAL_APPC_DISCOVERY")),
                        metavar="PREFIX", help="fetch {name}-{version}-{os}-{arch}.aci under this URL or directory")
    parser.add_argument("--max-layer-size", type=_size_option, metavar="SIZE",
                        default=value(env("CORRAL_MAX_LAYER_SIZE", str(DEFAULT_MAX_LAYER_SIZE))),
                        help="refuse an image layer that unpacks to more than this, holes included "
                             "(default 16G; env CORRAL_MAX_LAYER_SIZE)")
    parser.add_argument("--image-provisioner-backend", choices=("overlay", "copy", "bind"),
                        default=value(env("CORRAL_IMAGE_PROVISIONER_BACKEND")),
                        help="how rootfses are made (default: overlay where it works, else copy)")
