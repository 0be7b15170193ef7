"""The bubblewrap argument builder: what a sandbox sees, pinned without starting one."""

from __future__ import annotations

from pathlib import Path

import pytest

from ash_server.errors import SandboxError
from ash_server.sandbox.bwrap import (
    BwrapLauncher,
    bwrap_args,
    encode_args,
    identity_files,
    runtime_mounts,
    system_mounts,
)
from ash_server.sandbox.launcher import LaunchSpec

DATA = Path("/srv/ash")
WORKSPACE = DATA / "sessions/default/s1/workspace"
HOME = DATA / "sessions/default/s1/home"
SANDBOX_DIR = DATA / "sandboxes/sbx-1"


def spec(**overrides: object) -> LaunchSpec:
    values: dict[str, object] = {
        "sandbox_id": "sbx-1",
        "argv": ["/opt/ash/venv/bin/python", "-I", "-m", "ash_bridge"],
        "env": {"PATH": "/usr/bin:/bin", "ANTHROPIC_API_KEY": "sk-secret", "ASH_SERVER_PID": "42"},
        "workspace": WORKSPACE,
        "home": HOME,
        "sandbox_dir": SANDBOX_DIR,
        "ids": (65534, 65534),
        "extra_ro_paths": [Path("/opt/ash/venv"), Path("/usr"), Path("/usr/bin"), Path("/opt/ash/venv/lib")],
        "limits_argv": ["/bin/sh", "-c", "join", "x", "--"],
    }
    values.update(overrides)
    return LaunchSpec(**values)  # type: ignore[arg-type]


def pairs(args: list[str], option: str, arity: int = 2) -> list[tuple[str, ...]]:
    return [tuple(args[i + 1 : i + 1 + arity]) for i, a in enumerate(args) if a == option]


def test_namespaces_and_lifetime() -> None:
    args = bwrap_args(spec(), Path("/id"))
    for flag in (
        "--unshare-user",
        "--disable-userns",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-net",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ):
        assert flag in args, flag
    assert pairs(args, "--uid", 1) == [("65534",)] and pairs(args, "--gid", 1) == [("65534",)]
    assert args.index("--clearenv") < args.index("--setenv")


def test_full_network_shares_the_hosts_and_gets_dns() -> None:
    args = bwrap_args(spec(network="full"), Path("/id"))
    assert "--unshare-net" not in args
    assert ("/etc/resolv.conf", "/etc/resolv.conf") in pairs(args, "--ro-bind-try")
    for mode in ("none", "allowlist"):
        limited = bwrap_args(spec(network=mode), Path("/id"))
        assert "--unshare-net" in limited and "/etc/resolv.conf" not in limited


def test_mounts_keep_host_paths_and_only_the_sessions_folders_are_writable() -> None:
    args = bwrap_args(spec(), Path("/id"))
    assert pairs(args, "--bind") == [(str(WORKSPACE), str(WORKSPACE)), (str(HOME), str(HOME))]
    ro = pairs(args, "--ro-bind")
    assert ("/opt/ash/venv", "/opt/ash/venv") in ro and (str(SANDBOX_DIR), str(SANDBOX_DIR)) in ro
    assert ("/id/passwd", "/etc/passwd") in ro and ("/id/hosts", "/etc/hosts") in ro
    assert not any(src == str(DATA) or src == "/" or src.startswith("/root") for src, _ in ro)
    etc = [dest for _, dest in pairs(args, "--ro-bind-try")]
    assert "/etc/ld.so.cache" in etc and "/etc/ssl/certs" in etc
    assert not {"/etc/shadow", "/etc/gshadow", "/etc/ssh", "/etc/environment", "/etc/pip.conf"} & set(etc)
    assert ("tmpfs", "/tmp") in [(a[2:], args[i + 1]) for i, a in enumerate(args) if a == "--tmpfs"]
    assert pairs(args, "--proc", 1) == [("/proc",)] and pairs(args, "--dev", 1) == [("/dev",)]
    assert pairs(args, "--remount-ro", 1) == [("/",)] and pairs(args, "--chdir", 1) == [(str(WORKSPACE),)]
    # The private /tmp is mounted before anything that might live under /tmp on the host.
    assert args.index("--tmpfs") < args.index("--bind")


def test_environment_goes_in_whole_but_the_servers_pid() -> None:
    args = bwrap_args(spec(), Path("/id"))
    assert {name: value for name, value in pairs(args, "--setenv")} == {
        "PATH": "/usr/bin:/bin",
        "ANTHROPIC_API_KEY": "sk-secret",
    }


def test_outer_argv_joins_limits_first_then_drops_privileges_and_holds_no_secret() -> None:
    launcher = BwrapLauncher("/usr/bin/bwrap")
    argv = launcher.outer_argv(spec(), 7)
    assert argv[:5] == ["/bin/sh", "-c", "join", "x", "--"]
    assert argv[5] == "setpriv" and "--reuid=65534" in argv and "--no-new-privs" in argv
    bwrap = argv.index("/usr/bin/bwrap")
    assert argv[bwrap:] == ["/usr/bin/bwrap", "--args", "7", "--", "/opt/ash/venv/bin/python", "-I", "-m", "ash_bridge"]
    assert "sk-secret" not in " ".join(argv)
    unprivileged = launcher.outer_argv(spec(ids=None), 7)
    assert "setpriv" not in unprivileged


def test_identity_files_name_only_root_and_the_sandbox_user() -> None:
    files = identity_files(spec())
    assert files["passwd"].splitlines() == [
        "root:x:0:0:root:/root:/usr/sbin/nologin",
        f"sandbox:x:65534:65534:Ash sandbox:{HOME}:/bin/bash",
    ]
    assert "sandbox" in files["hosts"] and "localhost" in files["hosts"]
    assert "nobody:x:65534" in identity_files(spec(ids=(1000, 1000)))["passwd"]


def test_runtime_mounts_skip_usr_and_nested_paths() -> None:
    paths = [Path("/opt/ash/venv/lib"), Path("/usr"), Path("/opt/ash/venv"), Path("/usr/local/lib"), Path("/srv/b")]
    assert runtime_mounts(paths) == [Path("/srv/b"), Path("/opt/ash/venv")]


def test_system_mounts_follow_the_hosts_layout(tmp_path: Path) -> None:
    (tmp_path / "usr" / "lib").mkdir(parents=True)
    (tmp_path / "lib").symlink_to("usr/lib")
    (tmp_path / "lib64").mkdir()
    args = system_mounts(tmp_path)
    assert args[:3] == ["--ro-bind", str(tmp_path / "usr"), "/usr"]
    assert ("usr/lib", "/lib") in pairs(args, "--symlink")
    assert (str(tmp_path / "lib64"), "/lib64") in pairs(args, "--ro-bind")
    assert "/bin" not in args  # absent on this host, absent in the sandbox


def test_args_are_nul_separated_and_nul_is_refused() -> None:
    assert encode_args(["--setenv", "A", "b c"]) == b"--setenv\0A\0b c\0"
    with pytest.raises(SandboxError):
        encode_args(["--setenv", "A", "b\0c"])
