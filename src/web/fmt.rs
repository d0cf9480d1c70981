//! Display helpers for numbers, sizes, durations and times. Pages are rendered with
//! these precomputed strings so a 500-row table needs no template-side arithmetic.

use chrono::{DateTime, Utc};

/// `1.4 MB`, `512 B` (decimal units, like imapsync's own statistics).
pub fn bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{} B", n as i64)
    } else if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// `42 s`, `3 min 05 s`, `2 h 07 min`, `3 d 4 h`.
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        3600..86400 => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86400, (s % 86400) / 3600),
    }
}

/// `2026-01-02 13:04 UTC`: one unambiguous zone for a team spread over several.
pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub fn time_opt(t: Option<&DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_default()
}

/// Whole percent of `done` out of `total`, clamped to 0..=100; `None` without a total.
pub fn percent(done: i64, total: Option<i64>) -> Option<i64> {
    match total {
        Some(t) if t > 0 => Some((done.max(0).saturating_mul(100) / t).clamp(0, 100)),
        _ => None,
    }
}

/// `1,234,567` for counts a reader compares at a glance.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_durations_and_counts_read_naturally() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(37_900_000), "38 MB");
        assert_eq!(bytes(1_400_000), "1.4 MB");
        assert_eq!(duration(42), "42 s");
        assert_eq!(duration(185), "3 min 05 s");
        assert_eq!(duration(7620), "2 h 07 min");
        assert_eq!(duration(90000), "1 d 1 h");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(-12), "-12");
        assert_eq!(count(999), "999");
        assert_eq!(percent(50, Some(200)), Some(25));
        assert_eq!(percent(300, Some(200)), Some(100));
        assert_eq!(percent(1, None), None);
        assert_eq!(percent(1, Some(0)), None);
    }
}
