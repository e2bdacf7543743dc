//! Budget windows: calendar days and months in a configured time zone, and a lifetime.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use std::fmt;
use std::sync::{Arc, Mutex};

/// How long one budget's spend accumulates before it starts again from zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Period {
    /// A calendar day, midnight to midnight in the calendar's time zone.
    Daily,
    /// A calendar month, from the first at midnight in the calendar's time zone.
    Monthly,
    /// Never resets.
    Lifetime,
}

impl Period {
    /// `daily`, `monthly`, `lifetime`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Monthly => "monthly",
            Period::Lifetime => "lifetime",
        }
    }

    /// Parses [`Period::as_str`]'s names.
    pub fn from_name(s: &str) -> Option<Period> {
        match s {
            "daily" | "day" => Some(Period::Daily),
            "monthly" | "month" => Some(Period::Monthly),
            "lifetime" | "total" => Some(Period::Lifetime),
            _ => None,
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One window of a period: its name (part of the store key, e.g. `2026-12` or
/// `2026-12-02`) and when it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// `YYYY-MM-DD`, `YYYY-MM` or `all`.
    pub id: Arc<str>,
    /// The start of the next window, in microseconds since the Unix epoch (`None` for a
    /// lifetime).
    pub ends_us: Option<u64>,
}

/// The time zone calendar windows are cut in.
#[derive(Clone, Debug)]
pub struct Calendar {
    tz: TimeZone,
    name: String,
    /// The last daily and monthly windows computed: most calls fall in them, so they are
    /// answered with a clock comparison instead of a time-zone conversion.
    last: Arc<Mutex<[Option<Cached>; 2]>>,
}

/// A window and the instant it starts.
type Cached = (u64, Window);

impl Default for Calendar {
    fn default() -> Self {
        Calendar::utc()
    }
}

impl Calendar {
    /// Windows in UTC.
    pub fn utc() -> Self {
        Calendar {
            tz: TimeZone::UTC,
            name: "UTC".to_owned(),
            last: Arc::default(),
        }
    }

    /// Windows in an IANA time zone (`Europe/Paris`, `America/New_York`), from the tz
    /// database bundled into the binary.
    pub fn zone(name: &str) -> Result<Self, String> {
        let tz = TimeZone::get(name).map_err(|e| format!("unknown time zone {name:?}: {e}"))?;
        Ok(Calendar {
            tz,
            name: name.to_owned(),
            last: Arc::default(),
        })
    }

    /// The zone's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The window of `period` that contains `now_us` (microseconds since the epoch).
    pub fn window(&self, period: Period, now_us: u64) -> Window {
        let slot = match period {
            Period::Daily => 0,
            Period::Monthly => 1,
            Period::Lifetime => {
                return Window {
                    id: Arc::from("all"),
                    ends_us: None,
                };
            }
        };
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((starts, w)) = &last[slot] {
            if *starts <= now_us && w.ends_us.is_some_and(|end| now_us < end) {
                return w.clone();
            }
        }
        let w = self.compute(period, now_us);
        let starts = self.start_of_window(period, now_us).unwrap_or(u64::MAX);
        last[slot] = Some((starts, w.clone()));
        w
    }

    fn start_of_window(&self, period: Period, now_us: u64) -> Option<u64> {
        let ts = Timestamp::from_microsecond(i64::try_from(now_us).ok()?).ok()?;
        let date = ts.to_zoned(self.tz.clone()).date();
        match period {
            Period::Daily => self.start_of(date),
            Period::Monthly => self.start_of(date.first_of_month()),
            Period::Lifetime => Some(0),
        }
    }

    fn compute(&self, period: Period, now_us: u64) -> Window {
        let ts = Timestamp::from_microsecond(i64::try_from(now_us).unwrap_or(i64::MAX))
            .unwrap_or(Timestamp::MAX);
        let date = ts.to_zoned(self.tz.clone()).date();
        let (id, next) = match period {
            Period::Daily => (
                format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day()),
                date.tomorrow().ok(),
            ),
            Period::Monthly | Period::Lifetime => (
                format!("{:04}-{:02}", date.year(), date.month()),
                date.last_of_month().tomorrow().ok(),
            ),
        };
        Window {
            id: id.into(),
            ends_us: next.and_then(|d| self.start_of(d)),
        }
    }

    /// Midnight (or the first instant after a gap) of `date`, in microseconds.
    fn start_of(&self, date: Date) -> Option<u64> {
        let z = date.to_zoned(self.tz.clone()).ok()?;
        u64::try_from(z.timestamp().as_microsecond()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(s: &str) -> u64 {
        let ts: Timestamp = s.parse().expect("timestamp");
        ts.as_microsecond() as u64
    }

    #[test]
    fn days_and_months_in_utc() {
        let c = Calendar::utc();
        let w = c.window(Period::Daily, us("2026-12-02T23:59:59Z"));
        assert_eq!(&*w.id, "2026-12-02");
        assert_eq!(w.ends_us, Some(us("2026-12-03T00:00:00Z")));
        let m = c.window(Period::Monthly, us("2026-12-31T12:00:00Z"));
        assert_eq!(&*m.id, "2026-12");
        assert_eq!(m.ends_us, Some(us("2027-01-01T00:00:00Z")));
        assert_eq!(c.window(Period::Lifetime, 0).ends_us, None);
    }

    #[test]
    fn months_in_a_zone_follow_its_midnight() {
        let c = Calendar::zone("Asia/Tokyo").expect("zone");
        // 2026-11-30T15:00Z is 2026-12-01 00:00 in Tokyo (UTC+9).
        assert_eq!(
            &*c.window(Period::Monthly, us("2026-11-30T14:59:59Z")).id,
            "2026-11"
        );
        let dec = c.window(Period::Monthly, us("2026-11-30T15:00:00Z"));
        assert_eq!(&*dec.id, "2026-12");
        assert_eq!(dec.ends_us, Some(us("2026-12-31T15:00:00Z")));
        let ny = Calendar::zone("America/New_York").expect("zone");
        // The day DST ends is 25 hours long.
        let d = ny.window(Period::Daily, us("2026-11-01T12:00:00Z"));
        assert_eq!(d.ends_us, Some(us("2026-11-02T05:00:00Z")));
        assert!(Calendar::zone("Mars/Olympus").is_err());
        // Cached windows answer the same, and a clock that goes back is not served the
        // later window.
        assert_eq!(
            &*c.window(Period::Monthly, us("2026-12-15T00:00:00Z")).id,
            "2026-12"
        );
        assert_eq!(
            &*c.window(Period::Monthly, us("2026-11-30T14:59:59Z")).id,
            "2026-11"
        );
    }
}
