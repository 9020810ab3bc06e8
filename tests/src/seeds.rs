//! Parsing of the seed arguments the simulator binaries share.

use std::ops::Range;

/// The seeds named by `--seed N` (`flag == "--seed"`) or `--seeds LO..HI`, with `value`
/// the argument that followed the flag.
pub fn parse(flag: &str, value: Option<String>) -> Result<Range<u64>, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    let number = |s: &str| s.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
    if flag == "--seed" {
        let s = number(&value)?;
        return Ok(s..s + 1);
    }
    let (lo, hi) = value.split_once("..").ok_or_else(|| format!("{flag} takes LO..HI"))?;
    Ok(number(lo)?..number(hi)?)
}
