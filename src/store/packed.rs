//! How payment documents and event payloads are stored: their JSON text compressed with
//! LZ4 against a fixed dictionary, a typical event of a payment. Most of a document is
//! its field names and its links' paths, which the dictionary holds, so a 1.9 KiB event
//! is stored in about 0.5 KiB. Every state change writes a document and an event, so
//! this is most of what the database writes, and of its write-ahead log, per payment.
//!
//! A packed value is a marker byte, the text's length (4 bytes, little-endian) and the
//! LZ4 block. Anything else is read as the text itself, which is how values written
//! before (plain JSON text, first byte `{`) stay readable.

use std::borrow::Cow;

/// The first byte of a value packed against `DICTIONARY_V1`. No JSON text starts with it.
const LZ4_DICTIONARY_V1: u8 = 0x01;
/// Never change this file: stored values need it to be read. A better dictionary gets a
/// new marker, and this one stays for the values packed with it.
const DICTIONARY_V1: &[u8] = include_bytes!("dictionary-v1.json");
/// A packed value never unpacks to more (a damaged length must not make a read allocate
/// gigabytes).
const UNPACKED_MAX: usize = 16 << 20;
/// Marker and length.
const HEADER: usize = 5;

/// `text` packed for storage.
pub(crate) fn pack(text: &str) -> Vec<u8> {
    let input = text.as_bytes();
    // Longer than `unpack` accepts: stored as it is (no document comes near).
    let Some(length) = u32::try_from(input.len())
        .ok()
        .filter(|_| input.len() <= UNPACKED_MAX)
    else {
        return input.to_vec();
    };
    let mut out = vec![0; HEADER + lz4_flex::block::get_maximum_output_size(input.len())];
    out[0] = LZ4_DICTIONARY_V1;
    out[1..HEADER].copy_from_slice(&length.to_le_bytes());
    match lz4_flex::block::compress_into_with_dict(input, &mut out[HEADER..], DICTIONARY_V1) {
        Ok(written) => {
            out.truncate(HEADER + written);
            out
        }
        // Only if the output were too small, which its size rules out; stored as it is,
        // it still reads back.
        Err(_) => input.to_vec(),
    }
}

/// The text of a stored value, packed or not.
pub(crate) fn unpack(stored: &[u8]) -> anyhow::Result<Cow<'_, str>> {
    let Some((&LZ4_DICTIONARY_V1, rest)) = stored.split_first() else {
        return Ok(Cow::Borrowed(std::str::from_utf8(stored)?));
    };
    let (length, block) = lz4_flex::block::uncompressed_size(rest)?;
    anyhow::ensure!(
        length <= UNPACKED_MAX,
        "a stored value claims {length} bytes unpacked, more than {UNPACKED_MAX}"
    );
    let mut text = vec![0; length];
    let written = lz4_flex::block::decompress_into_with_dict(block, &mut text, DICTIONARY_V1)?;
    anyhow::ensure!(
        written == length,
        "a stored value unpacked to {written} bytes, not the {length} it claims"
    );
    Ok(Cow::Owned(String::from_utf8(text)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DICTIONARY_V1_FNV: u64 = 0xb848_e5ac_b579_f48b;

    fn event() -> String {
        let dictionary = std::str::from_utf8(DICTIONARY_V1).unwrap_or_default();
        dictionary
            .replace(
                "7f3c2a9e-5b1d-4e8a-9c6f-2d4b8a1e3f50",
                "0d8f6c1a-33b2-4c55-a1e0-9b7d2e6f4a11",
            )
            .replace("Giovanna", "Mario")
    }

    #[test]
    fn a_packed_event_reads_back_as_its_text_in_under_a_third_of_its_size() {
        let text = event();
        let packed = pack(&text);
        assert_eq!(packed[0], LZ4_DICTIONARY_V1);
        assert!(
            packed.len() * 3 < text.len(),
            "{} bytes packed from {}",
            packed.len(),
            text.len()
        );
        assert_eq!(unpack(&packed).ok().as_deref(), Some(text.as_str()));
    }

    #[test]
    fn text_stored_before_packing_reads_as_it_is() {
        let text = r#"{"id":"x","status":"PAYMENT_PENDING"}"#;
        assert!(matches!(unpack(text.as_bytes()), Ok(Cow::Borrowed(t)) if t == text));
        assert_eq!(unpack(&pack("")).ok().as_deref(), Some(""));
    }

    /// A value packed by this version must read back in every later one: this fails if the
    /// dictionary or the format changes under the same marker.
    #[test]
    fn a_value_packed_against_the_first_dictionary_still_reads() {
        let stored: &[u8] = &[
            1, 45, 0, 0, 0, 31, 123, 123, 6, 11, 4, 76, 6, 96, 58, 110, 117, 108, 108, 125,
        ];
        assert_eq!(
            unpack(stored).ok().as_deref(),
            Some(r#"{"status":"PAYMENT_PENDING","remote_id":null}"#)
        );
    }

    /// Values packed against the dictionary need every byte of it: this fails if the
    /// file is edited, even keeping its length, or its line ends are rewritten.
    #[test]
    fn the_first_dictionary_is_unchanged() {
        // FNV-1a, 64 bits.
        let hash = DICTIONARY_V1
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
            });
        assert_eq!((DICTIONARY_V1.len(), hash), (1953, DICTIONARY_V1_FNV));
    }

    #[test]
    fn text_longer_than_a_read_accepts_is_stored_as_it_is() {
        let text = "x".repeat(UNPACKED_MAX + 1);
        assert_eq!(pack(&text).len(), text.len());
        assert_eq!(unpack(&pack(&text)).ok().as_deref(), Some(text.as_str()));
    }

    #[test]
    fn damaged_values_are_errors_not_panics_or_huge_allocations() {
        let packed = pack(&event());
        // A length far beyond the cap.
        let mut huge = packed.clone();
        huge[1..HEADER].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(unpack(&huge).is_err());
        // A length that does not match the block.
        let mut short = packed.clone();
        short[1..HEADER].copy_from_slice(&10_u32.to_le_bytes());
        assert!(unpack(&short).is_err());
        // A block cut short, a header cut short, bytes that are not text.
        assert!(unpack(&packed[..packed.len() / 2]).is_err());
        assert!(unpack(&packed[..3]).is_err());
        assert!(unpack(&[0xff, 0xfe]).is_err());
    }
}
