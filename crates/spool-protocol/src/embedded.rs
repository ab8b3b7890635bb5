//! Bounds checks for the consumer protocol's embedded messages (ConsumerProtocolSubscription and
//! ConsumerProtocolAssignment), which travel as opaque bytes inside JoinGroup and SyncGroup.
//!
//! They come from other group members, so they are as untrusted as any request; kafka-protocol
//! would size vectors from their counts. Checking every count and length against the bytes
//! present first makes a decode safe. Neither schema is flexible in any version.

/// Which embedded message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedded {
    /// ConsumerProtocolSubscription (JoinGroup member metadata).
    Subscription,
    /// ConsumerProtocolAssignment (SyncGroup assignment).
    Assignment,
}

/// Kafka's longest topic name: a longer one can name no topic.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Most (topic, partition) entries one embedded message may list. Decoders turn each entry into
/// a (name, partition) pair, so without a cap a member could make a peer allocate ~70x the bytes
/// it sent; 200k is the partition count Kafka itself advises as a whole cluster's ceiling.
pub const MAX_PARTITION_ENTRIES: usize = 200_000;

struct Walker<'a> {
    buf: &'a [u8],
    /// (topic, partition) entries seen so far, against MAX_PARTITION_ENTRIES.
    entries: usize,
}

impl Walker<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.buf.split_at_checked(n)?;
        self.buf = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn string(&mut self, nullable: bool) -> Option<()> {
        match self.i16()? {
            -1 if nullable => Some(()),
            n if n >= 0 => self.take(n as usize).map(|_| ()),
            _ => None,
        }
    }
    fn bytes(&mut self) -> Option<()> {
        match self.i32()? {
            -1 => Some(()),
            n if n >= 0 => self.take(n as usize).map(|_| ()),
            _ => None,
        }
    }
    /// An array count, refused unless `min_size`-byte elements could all be present.
    fn count(&mut self, min_size: usize) -> Option<usize> {
        let n = self.i32()?;
        let n = usize::try_from(n).ok()?;
        (n <= self.buf.len() / min_size).then_some(n)
    }
    /// `[topic string, [int32 partition]]`, with names no longer than a topic name can be and
    /// at most MAX_PARTITION_ENTRIES entries in all.
    fn topic_partitions(&mut self) -> Option<()> {
        for _ in 0..self.count(6)? {
            let len = self.i16()?;
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l <= MAX_TOPIC_NAME_LEN)?;
            self.take(len)?;
            let parts = self.count(4)?;
            self.entries = self.entries.checked_add(parts)?;
            if self.entries > MAX_PARTITION_ENTRIES {
                return None;
            }
            self.take(parts * 4)?;
        }
        Some(())
    }
}

/// True when `body` (after the leading i16 version) is a well-formed `kind` at `version`, so
/// decoding it cannot allocate from a count the bytes do not back. Versions above 3 are checked
/// as 3, as Java's ConsumerProtocol reads newer versions with the newest schema it knows.
pub fn check(kind: Embedded, version: i16, body: &[u8]) -> bool {
    let version = version.clamp(0, 3);
    let mut w = Walker {
        buf: body,
        entries: 0,
    };
    let ok = match kind {
        Embedded::Subscription => (|| {
            for _ in 0..w.count(2)? {
                w.string(false)?;
            }
            w.bytes()?;
            if version >= 1 {
                w.topic_partitions()?;
            }
            if version >= 2 {
                w.i32()?;
            }
            if version >= 3 {
                w.string(true)?;
            }
            Some(())
        })(),
        Embedded::Assignment => (|| {
            w.topic_partitions()?;
            w.bytes()
        })(),
    };
    ok.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedPartition;
    use kafka_protocol::messages::{
        ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
    };
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn name(s: &'static str) -> TopicName {
        TopicName(StrBytes::from_static_str(s))
    }

    #[test]
    fn accepts_what_kafka_protocol_encodes_at_every_version_and_every_prefix_is_safe() {
        for v in 0..=3 {
            let sub = ConsumerProtocolSubscription::default()
                .with_topics(vec![
                    StrBytes::from_static_str("a"),
                    StrBytes::from_static_str("bb"),
                ])
                .with_user_data(Some(bytes::Bytes::from_static(b"ud")))
                .with_owned_partitions(if v >= 1 {
                    vec![OwnedPartition::default()
                        .with_topic(name("a"))
                        .with_partitions(vec![0, 2])]
                } else {
                    Vec::new()
                })
                .with_generation_id(if v >= 2 { 4 } else { -1 })
                .with_rack_id(if v >= 3 {
                    Some(StrBytes::from_static_str("r"))
                } else {
                    None
                });
            let mut b = BytesMut::new();
            sub.encode(&mut b, v).unwrap();
            assert!(check(Embedded::Subscription, v, &b), "subscription v{v}");
            let asg = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
                TopicPartition::default()
                    .with_topic(name("a"))
                    .with_partitions(vec![1, 3]),
            ]);
            let mut a = BytesMut::new();
            asg.encode(&mut a, v).unwrap();
            assert!(check(Embedded::Assignment, v, &a), "assignment v{v}");
            for cut in 0..a.len() {
                assert!(!check(Embedded::Assignment, v, &a[..cut]));
            }
            for cut in 0..b.len() {
                let _ = check(Embedded::Subscription, v, &b[..cut]);
            }
        }
    }

    #[test]
    fn lying_counts_are_refused() {
        assert!(!check(Embedded::Assignment, 0, &[0x7f, 0xff, 0xff, 0xff]));
        assert!(!check(
            Embedded::Subscription,
            0,
            &[0x7f, 0xff, 0xff, 0xff, 0, 1]
        ));
        // One topic with 2^30 partitions but no bytes for them.
        assert!(!check(
            Embedded::Assignment,
            0,
            &[0, 0, 0, 1, 0, 1, b't', 0x40, 0, 0, 0]
        ));
    }

    /// A hostile member's owned partitions or a hostile leader's assignment: names longer than
    /// any topic's, or more entries than any member could own, are refused before decoding.
    #[test]
    fn refuses_names_no_topic_can_have_and_too_many_entries() {
        fn assignment(name: &str, partitions: usize) -> Vec<u8> {
            let mut b = Vec::new();
            b.extend_from_slice(&1i32.to_be_bytes()); // one topic
            b.extend_from_slice(&(name.len() as i16).to_be_bytes());
            b.extend_from_slice(name.as_bytes());
            b.extend_from_slice(&(partitions as i32).to_be_bytes());
            for p in 0..partitions {
                b.extend_from_slice(&(p as i32).to_be_bytes());
            }
            b.extend_from_slice(&(-1i32).to_be_bytes()); // no user data
            b
        }
        let longest = "t".repeat(MAX_TOPIC_NAME_LEN);
        assert!(check(Embedded::Assignment, 3, &assignment(&longest, 3)));
        let too_long = "t".repeat(MAX_TOPIC_NAME_LEN + 1);
        assert!(!check(Embedded::Assignment, 3, &assignment(&too_long, 3)));
        assert!(check(
            Embedded::Assignment,
            3,
            &assignment("t", MAX_PARTITION_ENTRIES)
        ));
        assert!(!check(
            Embedded::Assignment,
            3,
            &assignment("t", MAX_PARTITION_ENTRIES + 1)
        ));
    }
}
