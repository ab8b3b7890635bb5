//! Choosing a partition for a record, exactly as Kafka's Java producer does.
//!
//! - With a key: `toPositive(murmur2(key)) % numPartitions`, where `murmur2` is Kafka's
//!   variant (seed `0x9747b28c`) and `toPositive(h) = h & 0x7fffffff`. Records with the same key
//!   land on the same partition whichever client produced them.
//! - Without a key: a *sticky* partition per topic, chosen at random among partitions that have
//!   a leader, and switched when a batch for it is completed (so batches fill up instead of a
//!   record going to each partition in turn).

use rand::Rng;

/// Kafka's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    // Java's switch falls through from case 3 to case 1.
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner gives `key` in a topic of `num_partitions`.
///
/// # Panics
/// If `num_partitions` is not positive.
pub fn partition_for_key(key: &[u8], num_partitions: i32) -> i32 {
    assert!(num_partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % num_partitions
}

/// The sticky partition of one topic for keyless records. The producer keeps one per topic
/// beside its cached metadata, so the per-record path takes no lock of its own for it.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Sticky(Option<i32>);

impl Sticky {
    /// The sticky partition if one is chosen and still valid; unlike [`Sticky::partition`] it
    /// needs no list of available partitions, so the per-record path builds none.
    pub fn current(&self, num_partitions: i32) -> Option<i32> {
        self.0.filter(|&p| p < num_partitions)
    }

    /// The sticky partition, choosing one if there is none yet.
    ///
    /// `available` lists partitions that have a leader; when empty, any of `num_partitions`.
    pub fn partition(&mut self, num_partitions: i32, available: &[i32]) -> i32 {
        match self.current(num_partitions) {
            Some(p) => p,
            None => {
                let p = choose(num_partitions, available, None);
                self.0 = Some(p);
                p
            }
        }
    }

    /// Called when the batch for `prev` is complete: moves to another partition. Returns the
    /// new sticky partition.
    pub fn on_new_batch(&mut self, num_partitions: i32, available: &[i32], prev: i32) -> i32 {
        match self.current(num_partitions) {
            // Someone else already switched away from `prev`.
            Some(p) if p != prev => p,
            _ => {
                let p = choose(num_partitions, available, Some(prev));
                self.0 = Some(p);
                p
            }
        }
    }
}

fn choose(num_partitions: i32, available: &[i32], avoid: Option<i32>) -> i32 {
    let mut rng = rand::thread_rng();
    let candidates: Vec<i32> = if available.is_empty() {
        (0..num_partitions).collect()
    } else {
        available.to_vec()
    };
    let others: Vec<i32> = candidates
        .iter()
        .copied()
        .filter(|p| Some(*p) != avoid)
        .collect();
    let pool = if others.is_empty() {
        &candidates
    } else {
        &others
    };
    pool[rng.gen_range(0..pool.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed with kafka-clients 4.3.1 (`Utils.murmur2` and
    /// `BuiltInPartitioner.partitionForKey`) by a small Java program: key, murmur2, then the
    /// partition over 3, 6 and 12 partitions.
    const JAVA: &[(&str, i32, [i32; 3])] = &[
        ("a", -1563381124, [1, 4, 4]),
        ("b", -1853091852, [2, 2, 8]),
        ("hello", 2132663229, [0, 3, 9]),
        ("key-1", 193331640, [0, 0, 0]),
        ("key-2", 852269702, [2, 2, 2]),
        ("key-3", -1839136101, [2, 5, 11]),
        ("key-4", 647367033, [0, 3, 9]),
        ("key-5", -1698326880, [2, 2, 8]),
        ("key-6", -758453868, [2, 2, 8]),
        ("key-7", 713419675, [1, 1, 7]),
        ("key-8", -1340033413, [1, 1, 7]),
        ("key-9", -1335190451, [0, 3, 9]),
        ("", 275646681, [0, 3, 9]),
        ("spool", -9521459, [0, 3, 9]),
        ("0123456789abcdef", 1438427052, [0, 0, 0]),
    ];

    #[test]
    fn matches_the_java_client() {
        for (key, hash, parts) in JAVA {
            assert_eq!(murmur2(key.as_bytes()), *hash, "murmur2({key:?})");
            for (n, want) in [3, 6, 12].iter().zip(parts) {
                assert_eq!(
                    partition_for_key(key.as_bytes(), *n),
                    *want,
                    "{key:?} over {n}"
                );
            }
        }
    }

    #[test]
    fn sticky_partition_stays_until_a_batch_completes() {
        let mut s = Sticky::default();
        assert_eq!(s.current(4), None);
        let p = s.partition(4, &[]);
        for _ in 0..10 {
            assert_eq!(s.partition(4, &[]), p);
            assert_eq!(s.current(4), Some(p));
        }
        let q = s.on_new_batch(4, &[], p);
        assert_ne!(p, q, "switches to another partition");
        assert_eq!(s.partition(4, &[]), q);
        // A second report for the old partition does not switch again.
        assert_eq!(s.on_new_batch(4, &[], p), q);
        // Partitions shrank under it (metadata changed): chosen again.
        assert_eq!(s.current(q), None);
    }

    #[test]
    fn sticky_prefers_partitions_with_leaders() {
        let mut s = Sticky::default();
        for _ in 0..20 {
            let p = s.partition(8, &[5]);
            assert_eq!(p, 5);
            assert_eq!(s.on_new_batch(8, &[5], p), 5, "only one available");
        }
        assert_eq!(Sticky::default().partition(1, &[]), 0);
    }
}
