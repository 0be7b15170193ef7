"""fail2ban on SSH and daily unattended security upgrades, as boot-script lines: the files of
ansible/roles/ash_hardening (the bare-metal path's role), written verbatim, so both paths configure the same."""

from __future__ import annotations

from ash_infra.source import REPO

FILES = REPO / "ansible" / "roles" / "ash_hardening" / "files"
TARGETS = {
    "jail.local": "/etc/fail2ban/jail.d/ash.local",
    "20auto-upgrades": "/etc/apt/apt.conf.d/20auto-upgrades",
    "52ash-unattended-upgrades": "/etc/apt/apt.conf.d/52ash-unattended-upgrades",
}


def hardening() -> str:
    lines = [
        "\n# fail2ban on SSH and daily security upgrades (ansible/roles/ash_hardening's files).",
        "apt-get install -y -q --no-install-recommends fail2ban python3-systemd unattended-upgrades",
    ]
    for name, target in TARGETS.items():
        lines += [f"cat >{target} <<'CONF'", (FILES / name).read_text().rstrip("\n"), "CONF"]
    lines += ["systemctl enable fail2ban", "systemctl restart fail2ban", ""]
    return "\n".join(lines)
