//! The CRC-32 (IEEE 802.3, as zlib computes it) that guards frames, log records and
//! snapshots. By default `crc32fast` (slicing-by-16 tables, or the CPU's carry-less
//! multiply where it has one); with feature `small-crc`, the `crc` crate with a single
//! 256-entry table, which costs 1 KiB of flash instead of 16 KiB. Both give the same
//! checksums, so a device and a server read each other's frames and logs.

/// The CRC-32 of `bytes`.
#[cfg(not(feature = "small-crc"))]
#[inline]
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// The CRC-32 of `bytes`.
#[cfg(feature = "small-crc")]
#[inline]
pub fn crc32(bytes: &[u8]) -> u32 {
    const CRC: crc::Crc<u32, crc::Table<1>> = crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISO_HDLC);
    CRC.checksum(bytes)
}

#[cfg(test)]
mod tests {
    use super::crc32;

    #[test]
    fn the_check_value_and_the_small_table_agree() {
        // The catalogue's check value for CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let small = crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISO_HDLC);
        let mut x = 0x9E37_79B9_u32;
        for len in 0..300 {
            let bytes: alloc::vec::Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            assert_eq!(crc32(&bytes), small.checksum(&bytes), "length {len}");
        }
    }
}
