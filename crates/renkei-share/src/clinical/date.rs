//! FHIR dates without a date crate: parsing `date`/`dateTime`/`instant` values and search
//! prefixes into UTC instant ranges, and the 14-digit sort key (`YYYYMMDDhhmmss`, UTC) the
//! index keeps. A value without a time is taken as a UTC day (documented in docs/FHIR.md).

/// Seconds in a day.
pub(crate) const DAY: i64 = 86_400;

pub(crate) use renkei_model::time::{civil_from_days, days_from_civil};

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// A parsed FHIR date/dateTime: the UTC instant range it covers, [start, end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// First second (Unix time).
    pub(crate) start: i64,
    /// First second after.
    pub(crate) end: i64,
}

fn num(s: &str, len: usize) -> Option<i64> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Parse `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, `YYYY-MM-DDThh:mm[:ss[.fff]](Z|±hh:mm)` (a time
/// without a zone is taken as UTC).
pub(crate) fn parse(v: &str) -> Option<Span> {
    let v = v.trim();
    let (date, time) = match v.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (v, None),
    };
    let mut parts = date.split('-');
    let y = num(parts.next()?, 4)?;
    let m = parts.next().map(|p| num(p, 2)).unwrap_or(Some(0))?;
    let d = parts.next().map(|p| num(p, 2)).unwrap_or(Some(0))?;
    if parts.next().is_some() || !(0..=12).contains(&m) || (m == 0 && d != 0) {
        return None;
    }
    let (m, d) = (m as u32, d as u32);
    if m == 0 {
        let start = days_from_civil(y, 1, 1) * DAY;
        return Some(Span {
            start,
            end: days_from_civil(y + 1, 1, 1) * DAY,
        });
    }
    if d == 0 {
        let start = days_from_civil(y, m, 1) * DAY;
        return Some(Span {
            start,
            end: start + i64::from(days_in_month(y, m)) * DAY,
        });
    }
    if d > days_in_month(y, m) {
        return None;
    }
    let day = days_from_civil(y, m, d) * DAY;
    let Some(t) = time else {
        return Some(Span {
            start: day,
            end: day + DAY,
        });
    };
    // zone
    let (clock, offset) = if let Some(c) = t.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = t.rfind(['+', '-']) {
        let (c, z) = t.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let (zh, zm) = z[1..].split_once(':')?;
        (c, sign * (num(zh, 2)? * 3600 + num(zm, 2)? * 60))
    } else {
        (t, 0)
    };
    let mut hms = clock.split(':');
    let h = num(hms.next()?, 2)?;
    let mi = num(hms.next()?, 2)?;
    let (s, precise) = match hms.next() {
        None => (0, false),
        Some(sec) => {
            let whole = sec.split('.').next()?;
            (num(whole, 2)?, true)
        }
    };
    if hms.next().is_some() || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let start = day + h * 3600 + mi * 60 + s - offset;
    Some(Span {
        start,
        end: start + if precise { 1 } else { 60 },
    })
}

/// The 14-digit UTC sort key of an instant.
pub(crate) fn key(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(DAY));
    let r = secs.rem_euclid(DAY);
    let y = y.clamp(0, 9999);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        r / 3600,
        r % 3600 / 60,
        r % 60
    )
}

/// The instant of a sort key.
pub(crate) fn from_key(k: &str) -> Option<i64> {
    if k.len() != 14 || !k.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |a: usize, b: usize| k[a..b].parse::<i64>().ok();
    let (m, d) = (n(4, 6)? as u32, n(6, 8)? as u32);
    if !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    Some(days_from_civil(n(0, 4)?, m, d) * DAY + n(8, 10)? * 3600 + n(10, 12)? * 60 + n(12, 14)?)
}

/// `YYYY-MM-DD` of an instant (UTC).
pub(crate) fn day_text(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// FHIR instant text (UTC) of an instant.
pub(crate) fn instant_text(secs: i64) -> String {
    let r = secs.rem_euclid(DAY);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        day_text(secs),
        r / 3600,
        r % 3600 / 60,
        r % 60
    )
}

/// Now, in Unix seconds.
pub(crate) fn now() -> i64 {
    (crate::model::now_us() / 1_000_000) as i64
}

/// A date search comparator (FHIR search prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// eq (default): within the value's range.
    Eq,
    /// ne: outside it.
    Ne,
    /// gt: after its end.
    Gt,
    /// lt: before its start.
    Lt,
    /// ge: from its start on.
    Ge,
    /// le: before its end.
    Le,
}

/// One `date=` search condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateFilter {
    /// Comparator.
    pub prefix: Prefix,
    /// First second of the value.
    pub start: i64,
    /// First second after the value.
    pub end: i64,
}

impl DateFilter {
    /// Parse `ge2024-01-01` and the like.
    pub fn parse(v: &str) -> Option<DateFilter> {
        let v = v.trim();
        let (prefix, rest) = match v.get(..2) {
            Some("eq") => (Prefix::Eq, &v[2..]),
            Some("ne") => (Prefix::Ne, &v[2..]),
            Some("gt") => (Prefix::Gt, &v[2..]),
            Some("lt") => (Prefix::Lt, &v[2..]),
            Some("ge") => (Prefix::Ge, &v[2..]),
            Some("le") => (Prefix::Le, &v[2..]),
            _ => (Prefix::Eq, v),
        };
        let s = parse(rest)?;
        Some(DateFilter {
            prefix,
            start: s.start,
            end: s.end,
        })
    }

    /// Whether a resource dated `t` (its start instant) matches.
    pub fn matches(&self, t: i64) -> bool {
        match self.prefix {
            Prefix::Eq => t >= self.start && t < self.end,
            Prefix::Ne => !(t >= self.start && t < self.end),
            Prefix::Gt => t >= self.end,
            Prefix::Lt => t < self.start,
            Prefix::Ge => t >= self.start,
            Prefix::Le => t < self.end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_to_utc_ranges() {
        let d = parse("2024-02-29").unwrap();
        assert_eq!(d.end - d.start, DAY);
        assert_eq!(key(d.start), "20240229000000");
        assert_eq!(parse("2024").unwrap().end, parse("2025").unwrap().start);
        assert_eq!(
            parse("2024-02").unwrap().end,
            parse("2024-03-01").unwrap().start
        );
        let t = parse("2024-05-01T09:30:00+09:00").unwrap();
        assert_eq!(key(t.start), "20240501003000");
        assert_eq!(parse("2024-05-01T00:30:00Z").unwrap().start, t.start);
        assert_eq!(parse("2024-05-01T00:30:00.123Z").unwrap().start, t.start);
        assert!(parse("2023-02-29").is_none());
        assert!(parse("2024-13").is_none());
        assert!(parse("24-01-01").is_none());
        assert!(parse("1960-03-04").unwrap().start < 0);
        assert_eq!(key(parse("1960-03-04").unwrap().start), "19600304000000");
        assert_eq!(
            from_key("19600304000000"),
            Some(parse("1960-03-04").unwrap().start)
        );
        assert_eq!(instant_text(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn prefixes_compare_on_the_start_instant() {
        let t = parse("2024-05-10T12:00:00Z").unwrap().start;
        let f = |s: &str| DateFilter::parse(s).unwrap().matches(t);
        assert!(f("2024-05-10"));
        assert!(f("eq2024-05"));
        assert!(!f("ne2024-05"));
        assert!(f("ge2024-05-10"));
        assert!(!f("gt2024-05-10"));
        assert!(f("le2024-05-10"));
        assert!(!f("lt2024-05-10"));
        assert!(f("lt2024-05-11"));
        assert!(DateFilter::parse("xx2024").is_none());
    }
}
