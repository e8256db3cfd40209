//! Config helpers shared by every role: durations written the way upstream's goconf wrote them
//! (`500ms`, `30s`, `1m`, `2h`) or as a bare number of seconds.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"1h"` (also `sec`, `min`, `hour`) or a bare integer of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like \"30s\""))?;
    let d = match unit.trim() {
        "" | "s" | "sec" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
        "h" | "hour" => Duration::from_secs(n.saturating_mul(3600)),
        other => return Err(format!("unknown duration unit {other:?} in {s:?} (use ms, s, m or h)")),
    };
    Ok(d)
}

/// Serde adapter for [`parse_duration`]: accepts a string or an integer of seconds.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(n) => Ok(Duration::from_secs(n)),
        Raw::Text(s) => parse_duration(&s).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_goconf() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1hour"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("7 days").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
