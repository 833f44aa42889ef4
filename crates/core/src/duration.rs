//! Human durations such as `90m`, `12h`, `14d` or `2w`, as used for expiries.

use crate::InvalidInput;

/// Parses a duration into seconds. A bare number is taken as days, the unit people mean
/// most often for expiries.
pub fn parse_duration_s(field: &'static str, raw: &str) -> Result<i64, InvalidInput> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let bad = || {
        InvalidInput::new(
            field,
            format!(
                "'{raw}' is not a duration; write a number and a unit such as 30m, 12h, 14d or 2w"
            ),
        )
    };
    let number: i64 = number.parse().map_err(|_| bad())?;
    let unit_s = match unit.trim() {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "" | "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    let total = number.checked_mul(unit_s).ok_or_else(bad)?;
    if total <= 0 {
        return Err(InvalidInput::new(
            field,
            "a duration must be longer than zero",
        ));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_common_units() {
        assert_eq!(parse_duration_s("expires", "14d").unwrap(), 14 * 86_400);
        assert_eq!(parse_duration_s("expires", "12h").unwrap(), 12 * 3600);
        assert_eq!(parse_duration_s("expires", "90m").unwrap(), 90 * 60);
        assert_eq!(parse_duration_s("expires", "2w").unwrap(), 14 * 86_400);
        assert_eq!(parse_duration_s("expires", "3").unwrap(), 3 * 86_400);
    }

    #[test]
    fn bad_durations_say_how_to_write_one() {
        assert!(
            parse_duration_s("expires", "soon")
                .unwrap_err()
                .message
                .contains("14d")
        );
        assert!(parse_duration_s("expires", "0d").is_err());
        assert!(parse_duration_s("expires", "-3d").is_err());
        assert!(parse_duration_s("expires", "99999999999999999w").is_err());
    }
}
