//! `AWS:Service` where systemd runs: one `systemctl list-units` for the state
//! of every service unit and one `systemctl list-unit-files` for how each
//! starts — two processes for the whole type, parsed here.

use super::{Entry, entry};

/// Parses `systemctl list-units --type=service --all --plain --no-legend`
/// and `systemctl list-unit-files --type=service --plain --no-legend`.
pub fn parse(units: &str, unit_files: &str) -> Vec<Entry> {
    let start: std::collections::HashMap<&str, &str> = unit_files
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?, w.next()?))
        })
        .collect();
    let mut out = Vec::new();
    for line in units.lines() {
        let line = line.trim_start_matches(['●', '*', ' ']);
        let mut w = line.split_whitespace();
        let (Some(unit), Some(_load), Some(active), Some(sub)) =
            (w.next(), w.next(), w.next(), w.next())
        else {
            continue;
        };
        let description = w.collect::<Vec<_>>().join(" ");
        let name = unit.strip_suffix(".service").unwrap_or(unit);
        let status = match (active, sub) {
            ("active", "running") => "Running".to_string(),
            ("active", s) => format!("Active ({s})"),
            ("failed", _) => "Failed".to_string(),
            _ => "Stopped".to_string(),
        };
        let start_type = match start.get(unit).copied() {
            Some("enabled") | Some("enabled-runtime") => "Automatic",
            Some("static") | Some("indirect") | Some("generated") => "Static",
            Some("masked") => "Disabled",
            _ => "Manual",
        };
        out.push(entry([
            ("Name", name.to_string()),
            ("DisplayName", description),
            ("ServiceType", "systemd".into()),
            ("Status", status),
            ("StartType", start_type.into()),
            ("DependentServices", String::new()),
            ("ServicesDependedOn", String::new()),
        ]));
    }
    out
}

fn run(systemctl: &str, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(systemctl)
        .args(args)
        .output()
        .map_err(|e| format!("{systemctl}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{systemctl} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn systemd_units(systemctl: &str) -> Result<Vec<Entry>, String> {
    let units = run(
        systemctl,
        &[
            "list-units",
            "--type=service",
            "--all",
            "--plain",
            "--no-legend",
            "--no-pager",
        ],
    )?;
    let files = run(
        systemctl,
        &[
            "list-unit-files",
            "--type=service",
            "--plain",
            "--no-legend",
            "--no-pager",
        ],
    )?;
    Ok(parse(&units, &files))
}
