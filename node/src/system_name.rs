//! The name the first-start welcome offers: what the system knows about the user.

use std::os::unix::fs::MetadataExt;

/// The account's full name (the GECOS field of `/etc/passwd`), else the login name,
/// else the host name. Never fails: it is only a suggestion the user may change.
pub fn suggested() -> String {
    let from_account = std::fs::metadata("/proc/self")
        .ok()
        .map(|m| m.uid())
        .and_then(|uid| {
            let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
            account_name(&passwd, uid)
        });
    from_account
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(crate::host_name)
        .chars()
        .filter(|c| !c.is_control())
        .take(api_types::settings::MAX_DISPLAY_NAME_CHARS)
        .collect()
}

/// From passwd lines `login:x:uid:gid:Full Name,room,phone:home:shell`.
fn account_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 5 || fields[2].parse::<u32>().ok()? != uid {
            return None;
        }
        let full = fields[4].split(',').next().unwrap_or("").trim();
        let name = if full.is_empty() {
            fields[0].trim()
        } else {
            full
        };
        (!name.is_empty()).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_name_then_login() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      li:x:1000:1000:Li Wei,Room 3,,:/home/li:/bin/bash\n\
                      ops:x:1001:1001::/home/ops:/bin/sh\n";
        assert_eq!(account_name(passwd, 1000).as_deref(), Some("Li Wei"));
        assert_eq!(account_name(passwd, 1001).as_deref(), Some("ops"));
        assert_eq!(account_name(passwd, 4242), None);
        assert!(!suggested().is_empty());
    }
}
