//! The systemd units in deploy/systemd pass `systemd-analyze verify` and keep their hardening:
//! one unit per role, the settings operators rely on (descriptor limit, restart, stop timeout
//! above the comet's drain), and an exposure score from `systemd-analyze security` that stays low.
//! `systemd-analyze` works without systemd running as PID 1 (a container, CI); under CI a missing
//! tool fails the test, locally it is skipped with a SKIPPED line.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The roles, each with a unit `gopush-<role>.service`.
const ROLES: [&str; 4] = ["standalone", "comet", "web", "message"];

/// Highest acceptable `systemd-analyze security` exposure, in tenths (the units score about 1.1).
const MAX_EXPOSURE_TENTHS: u32 = 20;

fn unit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd")
}

fn unit_text(role: &str) -> String {
    let path = unit_dir().join(format!("gopush-{role}.service"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The values of `key=` in `text`, in order (a key may repeat).
fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines().filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('=')).map(str::trim).collect()
}

/// A systemd time span such as `30s`, `1min 30s` or `2m`.
fn span(v: &str) -> Duration {
    let mut total = Duration::ZERO;
    for part in v.split_whitespace() {
        let digits = part.find(|c: char| !c.is_ascii_digit()).unwrap_or(part.len());
        let n: u64 = part[..digits].parse().unwrap_or_else(|e| panic!("bad time span {v:?}: {e}"));
        total += match &part[digits..] {
            "" | "s" | "sec" => Duration::from_secs(n),
            "m" | "min" => Duration::from_secs(n * 60),
            "ms" => Duration::from_millis(n),
            unit => panic!("unexpected unit {unit:?} in {v:?}"),
        };
    }
    total
}

#[test]
fn every_role_has_a_hardened_unit() {
    let drain = comet::CometConfig::default().base.drain;
    for role in ROLES {
        let text = unit_text(role);
        let one = |key: &str| -> &str {
            let v = values(&text, key);
            assert_eq!(v.len(), 1, "gopush-{role}.service sets {key}= exactly once: {v:?}");
            v[0]
        };
        assert_eq!(one("ExecStart"), format!("/usr/local/bin/gopush {role} -c %d/{role}.toml"));
        assert_eq!(one("LoadCredential"), format!("{role}.toml:/etc/gopush/{role}.toml"));
        assert!(one("LimitNOFILE").parse::<u64>().is_ok_and(|n| n >= 1 << 20), "{role}: LimitNOFILE too low");
        assert_eq!(one("Restart"), "on-failure");
        assert_eq!(one("User"), "gopush");
        assert_eq!(one("DynamicUser"), "yes");
        assert_eq!(one("KillSignal"), "SIGTERM");
        let stop = span(one("TimeoutStopSec"));
        assert!(stop >= drain + Duration::from_secs(10), "{role}: TimeoutStopSec {stop:?} must exceed drain {drain:?}");
        for key in [
            "NoNewPrivileges",
            "ProtectHome",
            "PrivateTmp",
            "PrivateDevices",
            "ProtectKernelTunables",
            "ProtectKernelModules",
            "ProtectKernelLogs",
            "ProtectControlGroups",
        ] {
            assert_eq!(one(key), "yes", "{role}: {key}");
        }
        assert_eq!(one("ProtectSystem"), "strict");
        assert_eq!(one("RestrictAddressFamilies"), "AF_INET AF_INET6 AF_UNIX");
        assert_eq!(one("CapabilityBoundingSet"), "", "{role}: no capabilities at all");
    }
}

/// `systemd-analyze` and a scratch copy of the units whose ExecStart runs the binary cargo built,
/// since `verify` checks that the command exists; `None` when the tool is missing (local runs).
fn analyzable_units() -> Option<(PathBuf, PathBuf, Vec<PathBuf>)> {
    let tool = testkit::program("systemd-analyze", "systemd")?;
    let dir = std::env::temp_dir().join(testkit::unique_name("gopush-units"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let units = ROLES
        .iter()
        .map(|role| {
            let text = unit_text(role).replace("/usr/local/bin/gopush", env!("CARGO_BIN_EXE_gopush"));
            let path = dir.join(format!("gopush-{role}.service"));
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            path
        })
        .collect();
    Some((tool, dir, units))
}

#[test]
fn systemd_analyze_verifies_every_unit() {
    let Some((tool, dir, units)) = analyzable_units() else { return };
    // No generators and no man page lookups: only the units themselves are judged.
    let out = Command::new(&tool)
        .args(["verify", "--man=no", "--generators=no"])
        .args(&units)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys are only warnings (exit 0), so any line about our units fails the test too.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("gopush-")).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify rejected the units ({}):\n{stderr}\nIf this says systemd cannot run here, the \
         machine lacks what `systemd-analyze verify` needs even without systemd as PID 1 (apt-get install systemd)",
        out.status
    );
}

#[test]
fn systemd_analyze_rates_every_unit_as_well_hardened() {
    let Some((tool, dir, units)) = analyzable_units() else { return };
    let mut failures = Vec::new();
    for unit in &units {
        let out = Command::new(&tool)
            .args(["security", "--offline=true", "--no-pager"])
            .arg(format!("--threshold={MAX_EXPOSURE_TENTHS}"))
            .arg(unit)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
        if !out.status.success() {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let summary = stdout.lines().filter(|l| l.contains('✗') || l.contains("Overall")).collect::<Vec<_>>();
            failures.push(format!(
                "{}: exit {} (exposure above {}.{}):\n{}\n{}",
                unit.display(),
                out.status,
                MAX_EXPOSURE_TENTHS / 10,
                MAX_EXPOSURE_TENTHS % 10,
                summary.join("\n"),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
