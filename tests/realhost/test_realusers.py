"""tests/support/realhost.py's RealUsers on its own (the layer other multi-user tests build on): users and
groups with session-unique names, commands run with the user's real identity, everything removed on exit."""

from __future__ import annotations

import grp
import pwd
import stat

from tests.support import realhost


def test_real_users_are_real_and_go_away(host):  # `host`: skips/fails exactly like the rest of the suite
    with realhost.RealUsers() as users:
        group = users.add_group("team")
        alice = users.add_user(users.group_name("alice"), group)
        bob = users.add_user(users.group_name("bob"), users.add_group("other"), extra_groups=[group])
        assert group.startswith(f"ks{users.suffix}-") and alice.name in {u.pw_name for u in pwd.getpwall()}
        ids = users.run_as(bob, ["id", "-un"]).stdout.strip(), users.run_as(bob, ["id", "-Gn"]).stdout.split()
        assert ids[0] == bob.name and group in ids[1]
        st = alice.home.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o750, alice.uid)
        # alice's home is 0750 alice:team and bob is in team: he may read it, not write it
        assert users.run_as(bob, ["ls", str(alice.home)]).returncode == 0
        denied = users.run_as(bob, ["touch", str(alice.home / "x")])
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
        root = users.root
    assert alice.name not in {u.pw_name for u in pwd.getpwall()}
    assert group not in {g.gr_name for g in grp.getgrall()}
    assert not root.exists()
