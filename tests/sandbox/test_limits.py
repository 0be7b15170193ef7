"""Limits backends against fake cgroup trees and the real cgroup v1 hierarchy; agent limits; the disk quota."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ash_server.errors import Invalid
from ash_server.sandbox.disk import DiskQuota, disk_usage
from ash_server.sandbox.limits import Limits, agent_limits, cgroupfs, detect_backend, instance_name, validate_limits
from ash_server.sandbox.limits.cgroup_v1 import CgroupV1Backend
from ash_server.sandbox.limits.cgroup_v2 import CgroupV2Backend
from ash_server.sandbox.limits.rlimit import RlimitBackend

MIB = 1024 * 1024
LIMITS = Limits(memory_mb=512, cpu_percent=50, max_pids=64, disk_mb=100)

V1_MOUNTINFO = """\
30 25 0:26 / /fake/memory rw,relatime - cgroup cgroup rw,memory
31 25 0:27 / /fake/pids rw,relatime - cgroup cgroup rw,pids
32 25 0:28 / /fake/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
33 25 0:29 / /fake/unified rw,relatime - cgroup2 cgroup2 rw
"""
V1_SELF = "4:memory:/job/7\n3:pids:/\n2:cpu,cpuacct:/\n0::/\n"


def rebase(text: str, root: Path) -> str:
    return text.replace(" /fake/", f" {root}/")


# -- Agent limits ------------------------------------------------------------------------------------------------


def test_agent_limits_lower_the_servers_and_never_raise_them() -> None:
    assert agent_limits({}, LIMITS) == LIMITS
    assert agent_limits({"limits": {"memoryMb": 256, "maxPids": 32}}, LIMITS) == Limits(256, 50, 32, 100)
    assert agent_limits({"limits": {"diskMb": 10_000}}, LIMITS).disk_mb == 100  # capped, not refused, at start
    with pytest.raises(Invalid, match="above this server's limit of 100"):
        validate_limits({"diskMb": 10_000}, LIMITS)
    for bad in ({"memoryMb": "512"}, {"maxPids": 2}, {"cpuPercent": True}, {"nope": 1}, [1]):
        with pytest.raises(Invalid):
            validate_limits(bad, LIMITS)


# -- Shared cgroupfs helpers -------------------------------------------------------------------------------------


def test_parsing_mountinfo_and_proc_self_cgroup() -> None:
    mounts = cgroupfs.parse_mountinfo(V1_MOUNTINFO + r"40 25 0:30 / /with\040space rw - cgroup cgroup rw,pids" + "\n")
    assert (Path("/fake/cpu,cpuacct"), "cgroup", {"rw", "cpu", "cpuacct"}) in mounts
    assert mounts[-1][0] == Path("/with space")
    assert cgroupfs.parse_self_cgroup(V1_SELF) == {"memory": "/job/7", "pids": "/", "cpu": "/", "cpuacct": "/", "": "/"}


def test_join_script_puts_the_process_itself_in_every_cgroup_then_execs(tmp_path: Path) -> None:
    procs = [tmp_path / "a.procs", tmp_path / "b.procs"]
    out = subprocess.run([*cgroupfs.join_argv(procs), "sh", "-c", "echo $$"], capture_output=True, text=True)
    assert out.returncode == 0
    assert [p.read_text().strip() for p in procs] == [out.stdout.strip()] * 2  # same pid: exec, not a child
    failing = subprocess.run([*cgroupfs.join_argv([tmp_path / "missing" / "x"]), "true"], capture_output=True)
    assert failing.returncode == 125  # never runs the command outside its cgroup


# -- cgroup v1 ---------------------------------------------------------------------------------------------------


def test_v1_backend_on_a_fake_tree(tmp_path: Path) -> None:
    backend = CgroupV1Backend.detect("ash-test", mountinfo=rebase(V1_MOUNTINFO, tmp_path), self_cgroup=V1_SELF)
    assert backend is not None and backend.name == "cgroup-v1"
    assert backend.parents["memory"] == tmp_path / "memory/job/7/ash-test"
    assert backend.parents["cpu"] == tmp_path / "cpu,cpuacct/ash-test"
    confinement = backend.confine("sbx-1", LIMITS)
    memory, pids, cpu = (confinement.groups[c] for c in ("memory", "pids", "cpu"))
    assert (memory / "memory.limit_in_bytes").read_text() == str(512 * MIB)
    assert (pids / "pids.max").read_text() == "64"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000" and (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert str(memory / "cgroup.procs") in confinement.argv and "--fsize=104857600" in confinement.argv
    assert confinement.breach() is None
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert confinement.breach() == "sandbox ran out of memory (limit 512 MiB)"
    (memory / "memory.oom_control").write_text("oom_kill 0\n")
    (pids / "pids.events").write_text("max 3\n")
    assert confinement.breach() == "sandbox hit its process limit (64 processes and threads)"
    confinement.prioritise(background=True)  # a warm sandbox's start: the least CPU share
    assert (cpu / "cpu.shares").read_text() == "2"
    confinement.prioritise(background=False)
    assert (cpu / "cpu.shares").read_text() == "1024"


def test_v1_needs_memory_and_pids(tmp_path: Path) -> None:
    only_memory = "30 25 0:26 / /fake/memory rw - cgroup cgroup rw,memory\n"
    assert CgroupV1Backend.detect("x", mountinfo=rebase(only_memory, tmp_path), self_cgroup=V1_SELF) is None


# -- cgroup v2 ---------------------------------------------------------------------------------------------------


def v2_tree(tmp_path: Path, controllers: str) -> tuple[str, str, Path]:
    own = tmp_path / "unified" / "svc"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text(controllers)
    (own / "cgroup.procs").write_text("")
    mountinfo = f"33 25 0:29 / {tmp_path}/unified rw - cgroup2 cgroup2 rw\n"
    return mountinfo, "0::/svc\n", own


def test_v2_backend_on_a_delegated_fake_tree(tmp_path: Path) -> None:
    mountinfo, self_cgroup, own = v2_tree(tmp_path, "cpuset cpu io memory pids\n")
    backend = CgroupV2Backend.detect("ash-test", mountinfo=mountinfo, self_cgroup=self_cgroup)
    assert backend is not None and backend.name == "cgroup-v2"
    assert (own / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    confinement = backend.confine("sbx-1", LIMITS)
    group = own / "ash-test" / "sbx-1"
    assert (group / "memory.max").read_text() == str(512 * MIB)
    assert (group / "memory.oom.group").read_text() == "1"
    assert (group / "pids.max").read_text() == "64" and (group / "cpu.max").read_text() == "50000 100000"
    assert confinement.argv[:4] == cgroupfs.join_argv([group / "cgroup.procs"])[:4]
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n")
    assert confinement.breach() == "sandbox ran out of memory (limit 512 MiB)"
    confinement.prioritise(background=True)
    assert (group / "cpu.weight").read_text() == "1"
    confinement.prioritise(background=False)
    assert (group / "cpu.weight").read_text() == "100"


def test_v2_without_the_controllers_or_on_v1_hosts_is_not_used(tmp_path: Path) -> None:
    mountinfo, self_cgroup, _ = v2_tree(tmp_path, "cpu io\n")  # this host: a v2 mount without memory and pids
    assert CgroupV2Backend.detect("x", mountinfo=mountinfo, self_cgroup=self_cgroup) is None
    assert CgroupV2Backend.detect("x", mountinfo=V1_MOUNTINFO, self_cgroup=V1_SELF) is None


# -- rlimits -----------------------------------------------------------------------------------------------------


def test_rlimit_backend_is_a_prlimit_prefix() -> None:
    unused_uid = 54321
    confinement = RlimitBackend(unused_uid).confine("sbx-1", LIMITS)
    assert confinement.argv == ["prlimit", f"--as={512 * MIB}", "--nproc=64", f"--fsize={100 * MIB}", "--"]
    assert confinement.breach() is None
    out = subprocess.run([*confinement.argv, "cat", "/proc/self/limits"], capture_output=True, text=True)
    limits = {line[:26].strip(): line[26:].split()[0] for line in out.stdout.splitlines()[1:]}
    assert limits["Max processes"] == "64" and limits["Max file size"] == str(100 * MIB)
    # RLIMIT_NPROC counts per user: a sandbox may add its limit to what its user already runs.
    busy = RlimitBackend(os.getuid()).confine("sbx-2", LIMITS)
    assert busy.nproc > 64
    # No cgroup to join: a forked bridge could be put under none of it (forking.py starts these the exec way).
    assert confinement.procs_files == []
    with pytest.raises(OSError):
        confinement.join(os.getpid())
    assert limits["Max address space"] == str(512 * MIB)


# -- The real hierarchy of this host -----------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="creating cgroups needs root")
async def test_real_cgroups_confine_a_process_and_are_removed(tmp_path: Path) -> None:
    backend = detect_backend(tmp_path, 65534)
    if backend.name == "rlimit":
        pytest.skip("no usable cgroup hierarchy here")
    confinement = backend.confine("sbx-unit", Limits(256, 100, 32, 10))
    try:
        process = await asyncio.create_subprocess_exec(
            *confinement.argv, "sh", "-c", "cat /proc/self/cgroup", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await process.communicate()
        assert f"{instance_name(tmp_path)}/sbx-unit" in out.decode()
        assert confinement.breach() is None
    finally:
        await confinement.release()
        backend.close()
    assert not any(p.exists() for p in getattr(confinement, "groups", {}).values())


# -- Disk quota --------------------------------------------------------------------------------------------------


def test_disk_usage_counts_blocks_once_and_never_follows_symlinks(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * (2 * MIB))
    (tmp_path / "sub").mkdir()
    os.link(tmp_path / "a", tmp_path / "sub" / "hardlink")
    (tmp_path / "usr").symlink_to("/usr")
    with (tmp_path / "sparse").open("wb") as f:
        f.truncate(500 * MIB)
    used = disk_usage([tmp_path])
    assert 2 * MIB <= used.bytes < 3 * MIB
    assert used.entries == 4  # a and its hard link once, sub, usr (the link, not /usr), sparse


async def test_disk_quota_trips_and_lets_an_over_quota_sandbox_clean_up(tmp_path: Path) -> None:
    quota = DiskQuota([tmp_path], limit_mb=4)
    await quota.start()
    assert await quota.over(eager=True) is None
    (tmp_path / "big").write_bytes(b"x" * (5 * MIB))
    reason = await quota.over(eager=True)
    assert reason is not None and "limit 4 MiB" in reason
    # A new sandbox on the same folder starts over its quota: it may run, a little growth is tolerated ...
    restarted = DiskQuota([tmp_path], limit_mb=4)
    await restarted.start()
    (tmp_path / "note").write_bytes(b"x" * 100_000)
    assert await restarted.over(eager=True) is None
    # ... but not real growth.
    (tmp_path / "more").write_bytes(b"x" * (2 * MIB))
    assert await restarted.over(eager=True) is not None
    for name in ("big", "more"):
        (tmp_path / name).unlink()
    assert await restarted.over(eager=True) is None and restarted.ceiling == restarted.limit


async def test_200000_empty_files_break_the_file_count_quota(tmp_path: Path) -> None:
    """Empty files take no blocks: the byte quota alone let 200,000 of them through. The default file count
    quota (limits.diskInodes, ASH_SANDBOX_DISK_INODES) stops them, and a cleaned-up folder is under it again."""
    quota = DiskQuota([tmp_path], limit_mb=100)  # the default file count: 100,000
    await quota.start()
    folder = tmp_path / "many"
    folder.mkdir()
    subprocess.run("seq 200000 | xargs touch", shell=True, cwd=folder, check=True)
    reason = await quota.over(eager=True)
    assert quota.used.bytes < 100 * MIB and quota.used.entries == 200_001
    assert reason is not None and "file count quota (200001 files and folders, limit 100000)" in reason
    assert "limits.diskInodes" in reason
    # A sandbox started on the folder may clean up (it is tolerated a tenth more), not grow further.
    restarted = DiskQuota([tmp_path], limit_mb=100)
    await restarted.start()
    assert await restarted.over(eager=True) is None and restarted.ceiling.entries == 210_001
    await asyncio.to_thread(shutil.rmtree, folder)
    cleaned = DiskQuota([tmp_path], limit_mb=100)
    await cleaned.start()
    assert await cleaned.over(eager=True) is None and cleaned.ceiling == cleaned.limit
