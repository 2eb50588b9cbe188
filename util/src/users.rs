//! Local users and groups, read from `/etc/passwd` and `/etc/group` directly.
//!
//! The static agent must never load NSS modules (a statically linked glibc
//! cannot), so `getpwnam` and friends are out: these files are all it knows,
//! which means only local accounts (LDAP or SSSD users are not seen). The
//! coordinator uses the same reader to name the owners of files in messages.

use std::io;
use std::path::Path;

/// Where the local accounts are.
pub const PASSWD_FILE: &str = "/etc/passwd";
pub const GROUP_FILE: &str = "/etc/group";

/// One line of `/etc/passwd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// The users of a passwd file's text; lines that do not parse are skipped
/// (comments, NIS `+` entries, damage), as the C library does.
pub fn parse_passwd(text: &str) -> Vec<User> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 || f[0].is_empty() || f[0].starts_with(['#', '+', '-']) {
                return None;
            }
            Some(User {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
                shell: f[6].to_string(),
            })
        })
        .collect()
}

/// The supplementary groups of `user` in a group file's text: every group
/// that lists the user as a member, plus `primary`, sorted and without
/// duplicates.
pub fn parse_groups_of(text: &str, user: &str, primary: u32) -> Vec<u32> {
    let mut gids: Vec<u32> = text
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 || f[0].starts_with(['#', '+', '-']) {
                return None;
            }
            let gid: u32 = f[2].parse().ok()?;
            f[3].split(',').any(|m| m.trim() == user).then_some(gid)
        })
        .collect();
    gids.push(primary);
    gids.sort_unstable();
    gids.dedup();
    gids
}

fn read(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The local user named `name`, if there is one.
pub fn user_by_name(name: &str) -> io::Result<Option<User>> {
    Ok(parse_passwd(&read(Path::new(PASSWD_FILE))?)
        .into_iter()
        .find(|u| u.name == name))
}

/// The local user with this uid (the first, if several share it).
pub fn user_by_uid(uid: u32) -> io::Result<Option<User>> {
    Ok(parse_passwd(&read(Path::new(PASSWD_FILE))?)
        .into_iter()
        .find(|u| u.uid == uid))
}

/// The groups `user` belongs to (with its primary group).
pub fn groups_of(user: &User) -> io::Result<Vec<u32>> {
    Ok(parse_groups_of(
        &read(Path::new(GROUP_FILE))?,
        &user.name,
        user.gid,
    ))
}

/// The uid's local name, else the number: what `chown` takes.
pub fn name_of(uid: u32) -> String {
    match user_by_uid(uid) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}

/// `name (uid N)` when the uid has a local name, else `uid N`: how messages
/// name the owner of a file.
pub fn describe_uid(uid: u32) -> String {
    match user_by_uid(uid) {
        Ok(Some(u)) => format!("{} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
+nisuser::::::
broken:x:notanumber:1::/:/bin/sh
short:x:5
alice:x:1000:1000:Alice,,,:/home/alice:/bin/zsh
";
    const GROUP: &str = "\
root:x:0:
adm:x:4:syslog,alice
alice:x:1000:
docker:x:999:bob, alice
#wheel:x:10:alice
";

    #[test]
    fn passwd_lines_that_parse_are_users_and_the_rest_is_skipped() {
        let users = parse_passwd(PASSWD);
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["root", "daemon", "alice"]);
        assert_eq!(
            users[2],
            User {
                name: "alice".into(),
                uid: 1000,
                gid: 1000,
                home: "/home/alice".into(),
                shell: "/bin/zsh".into(),
            }
        );
    }

    #[test]
    fn groups_are_the_memberships_and_the_primary_group() {
        assert_eq!(parse_groups_of(GROUP, "alice", 1000), [4, 999, 1000]);
        assert_eq!(parse_groups_of(GROUP, "root", 0), [0]);
        assert_eq!(parse_groups_of(GROUP, "syslog", 104), [4, 104]);
        // A member list entry that merely contains the name is not a membership.
        assert_eq!(parse_groups_of("g:x:7:malice\n", "alice", 1), [1]);
    }

    #[test]
    fn the_local_root_account_is_found() {
        let root = user_by_uid(0).unwrap().expect("root is in /etc/passwd");
        assert_eq!(root.name, "root");
        assert_eq!(user_by_name("root").unwrap().map(|u| u.uid), Some(0));
        assert_eq!(describe_uid(0), "root (uid 0)");
        assert_eq!(name_of(0), "root");
        assert_eq!(name_of(4_000_000_000), "4000000000");
        assert_eq!(describe_uid(4_000_000_000), "uid 4000000000");
    }
}
