//! Which partition owns a payment: Kafka's default (Java client) partitioner, murmur2 of
//! the key, masked positive, modulo the partition count. librdkafka's `murmur2_random`
//! partitioner computes the same for non-null keys, so cassa can tell which partition
//! (and hence which instance) owns a payment key.

/// Kafka's murmur2 hash (as in the Java client's `Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // The Java client uses an `int` length; keys longer than 2 GiB are not a concern here, and the
    // truncating cast mirrors what Java would do with such a length anyway.
    let mut h: u32 = SEED ^ (data.len() as u32);

    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }

    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }

    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;

    i32::from_ne_bytes(h.to_ne_bytes())
}

/// The partition the Java client's default partitioner (and librdkafka's `murmur2_random`
/// partitioner) picks for a non-empty key: `(murmur2(key) & 0x7fffffff) % partitions`.
///
/// `partitions` must be positive; for `partitions <= 0` this returns 0.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_java_client_vectors() {
        let vectors: &[(&str, i32)] = &[
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (input, expected) in vectors {
            assert_eq!(murmur2(input.as_bytes()), *expected, "murmur2({input:?})");
        }
    }

    #[test]
    fn partition_for_is_in_range_and_non_negative() {
        for key in ["21", "foobar", "abc", "x", "payment-42"] {
            let p = partition_for(key.as_bytes(), 6);
            assert!((0..6).contains(&p), "{key}: {p}");
        }
        // murmur2("21") is negative: the mask must make it positive before the modulo.
        assert_eq!(
            partition_for(b"21", 6),
            (-973_932_308_i32 & 0x7fff_ffff) % 6
        );
        assert_eq!(partition_for(b"abc", 0), 0);
        assert_eq!(partition_for(b"abc", 1), 0);
    }
}
