//! Resource amounts as people write them: CPU cores (`2`, `0.5`), memory (`4G`, `512M`,
//! `1.5GiB`), and the workload time limits (`2h`, `90m`).

use crate::InvalidInput;

/// Cores as thousandths of a core (`0.5` → 500).
pub fn parse_cpus(field: &'static str, raw: &str) -> Result<u64, InvalidInput> {
    let value: f64 = raw.trim().parse().map_err(|_| {
        InvalidInput::new(
            field,
            format!(
                "'{}' is not a number of CPU cores; write e.g. 2 or 0.5",
                short(raw)
            ),
        )
    })?;
    cpus_from_cores(field, value)
}

pub fn cpus_from_cores(field: &'static str, cores: f64) -> Result<u64, InvalidInput> {
    if !cores.is_finite() || cores <= 0.0 {
        return Err(InvalidInput::new(
            field,
            "ask for more than 0 CPU cores, e.g. 1 or 0.5",
        ));
    }
    if cores > 4096.0 {
        return Err(InvalidInput::new(
            field,
            "that is more CPU cores than any machine has",
        ));
    }
    let millis = (cores * 1000.0).round() as u64;
    if millis == 0 {
        return Err(InvalidInput::new(field, "ask for at least 0.001 CPU cores"));
    }
    Ok(millis)
}

/// Memory in MiB from `4G`, `4GiB`, `512M`, `1.5G` or a bare number of MiB.
pub fn parse_memory_mib(field: &'static str, raw: &str) -> Result<u64, InvalidInput> {
    let text = raw.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || {
        InvalidInput::new(
            field,
            format!(
                "'{}' is not an amount of memory; write e.g. 4G or 512M",
                short(raw)
            ),
        )
    };
    let number: f64 = number.parse().map_err(|_| bad())?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mi" | "mib" => 1.0,
        "g" | "gb" | "gi" | "gib" => 1024.0,
        "t" | "tb" | "ti" | "tib" => 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let mib = number * factor;
    if !mib.is_finite() || mib < 1.0 {
        return Err(InvalidInput::new(field, "ask for at least 1M of memory"));
    }
    if mib > 64.0 * 1024.0 * 1024.0 {
        return Err(InvalidInput::new(
            field,
            "that is more memory than any machine has",
        ));
    }
    Ok(mib.round() as u64)
}

fn short(raw: &str) -> String {
    raw.chars().take(30).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_read_whole_and_fractional_cores() {
        assert_eq!(parse_cpus("cpus", "2").unwrap(), 2000);
        assert_eq!(parse_cpus("cpus", "0.5").unwrap(), 500);
        assert!(parse_cpus("cpus", "-1").is_err());
        assert!(parse_cpus("cpus", "0").is_err());
        assert!(parse_cpus("cpus", "lots").is_err());
        assert!(parse_cpus("cpus", "NaN").is_err());
        assert!(parse_cpus("cpus", "1e9").is_err());
    }

    #[test]
    fn memory_reads_common_units() {
        assert_eq!(parse_memory_mib("memory", "4G").unwrap(), 4096);
        assert_eq!(parse_memory_mib("memory", "4GiB").unwrap(), 4096);
        assert_eq!(parse_memory_mib("memory", "512M").unwrap(), 512);
        assert_eq!(parse_memory_mib("memory", "1.5g").unwrap(), 1536);
        assert_eq!(parse_memory_mib("memory", "300").unwrap(), 300);
        assert!(parse_memory_mib("memory", "4X").is_err());
        assert!(parse_memory_mib("memory", "0").is_err());
        assert!(parse_memory_mib("memory", "-4G").is_err());
        assert!(parse_memory_mib("memory", "9999999T").is_err());
    }
}
