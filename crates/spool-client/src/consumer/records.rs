//! What a poll returns when the application reads records in place: [`ConsumerRecords`].

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use spool_protocol::records::RecordSpan;

use super::ConsumerRecord;

/// The records of one poll, read in place from the fetched batches.
///
/// It holds each batch's bytes once and a small entry per record that says where the record's
/// fields lie, so a poll costs a few allocations however many records it returns, and reading a
/// record ([`RecordRef`]) copies and reference-counts nothing. [`ConsumerRecords::to_vec`] makes
/// owned [`ConsumerRecord`]s, which is what [`Consumer::poll`](super::Consumer::poll) returns.
#[derive(Clone, Default)]
pub struct ConsumerRecords {
    /// The batches (decompressed records sections) the records lie in, in order.
    batches: Vec<Source>,
    /// Each record: the index of its batch in `batches`, and where its fields lie there.
    records: Vec<(u32, RecordSpan)>,
}

#[derive(Clone)]
struct Source {
    topic: Arc<str>,
    partition: i32,
    data: Bytes,
}

impl std::fmt::Debug for ConsumerRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the batches' bytes: they can be megabytes.
        f.debug_struct("ConsumerRecords")
            .field("records", &self.records.len())
            .field("batches", &self.batches.len())
            .finish()
    }
}

impl ConsumerRecords {
    /// Room for `n` more records.
    pub(super) fn reserve(&mut self, n: usize) {
        self.records.reserve(n);
    }

    /// Adds a batch's records section (spans of [`RecordIter::next_span`] point into it) and
    /// returns its index for [`ConsumerRecords::push`].
    ///
    /// [`RecordIter::next_span`]: spool_protocol::records::RecordIter::next_span
    pub(super) fn add_batch(&mut self, topic: &Arc<str>, partition: i32, data: &Bytes) -> u32 {
        self.batches.push(Source {
            topic: topic.clone(),
            partition,
            data: data.clone(),
        });
        // A poll holds at most `max.poll.records` records, so far fewer batches than u32::MAX.
        (self.batches.len() - 1) as u32
    }

    /// Adds a record of the batch `batch` (from [`ConsumerRecords::add_batch`]).
    pub(super) fn push(&mut self, batch: u32, span: RecordSpan) {
        self.records.push((batch, span));
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records in the order they were taken from the fetched answers: runs of one
    /// partition, offsets rising within a run (a partition's later answer may follow another
    /// partition's run).
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            batches: &self.batches,
            records: self.records.iter(),
        }
    }

    /// The records as owned [`ConsumerRecord`]s (their keys and values share the fetched bytes).
    pub fn to_vec(&self) -> Vec<ConsumerRecord> {
        self.iter().map(|r| r.to_record()).collect()
    }
}

impl<'a> IntoIterator for &'a ConsumerRecords {
    type Item = RecordRef<'a>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The records of a [`ConsumerRecords`], in order.
#[derive(Clone)]
pub struct Iter<'a> {
    batches: &'a [Source],
    records: std::slice::Iter<'a, (u32, RecordSpan)>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = RecordRef<'a>;

    fn next(&mut self) -> Option<RecordRef<'a>> {
        let (batch, span) = self.records.next()?;
        // Both come from `add_batch` and `push`: the index and the span's positions are valid.
        let source = &self.batches[*batch as usize];
        let data = &source.data[..];
        Some(RecordRef {
            topic: &source.topic,
            partition: source.partition,
            offset: span.offset,
            timestamp: span.timestamp,
            key: span.key.map(|k| &data[k.range()]),
            value: span.value.map(|v| &data[v.range()]),
            source,
            span,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.records.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl std::fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter")
            .field("remaining", &self.records.len())
            .finish()
    }
}

/// One record of a [`ConsumerRecords`], borrowed from the fetched bytes.
#[derive(Clone, Copy)]
pub struct RecordRef<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Create or log-append time, ms since the epoch.
    pub timestamp: i64,
    /// Key.
    pub key: Option<&'a [u8]>,
    /// Value.
    pub value: Option<&'a [u8]>,
    source: &'a Source,
    span: &'a RecordSpan,
}

impl std::fmt::Debug for RecordRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The record's own fields, not the whole batch it lies in.
        f.debug_struct("RecordRef")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("timestamp", &self.timestamp)
            .field("key", &self.key)
            .field("value", &self.value)
            .field("headers", &self.span.header_count)
            .finish()
    }
}

impl<'a> RecordRef<'a> {
    /// The headers in order. Kafka's header keys are UTF-8 strings; invalid bytes are replaced
    /// (as [`ConsumerRecord::headers`] has them).
    pub fn headers(&self) -> impl Iterator<Item = (Cow<'a, str>, Option<&'a [u8]>)> + 'a {
        self.span
            .headers(&self.source.data)
            .map(|(k, v)| (String::from_utf8_lossy(k), v))
    }

    /// This record as an owned [`ConsumerRecord`] (its key and value share the fetched bytes).
    pub fn to_record(&self) -> ConsumerRecord {
        let r = self.span.record(&self.source.data);
        ConsumerRecord {
            topic: self.source.topic.clone(),
            partition: self.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key,
            value: r.value,
            headers: r.headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use spool_protocol::compression::Compression;
    use spool_protocol::records::{BatchBuilder, DecodedBatches};

    use super::*;

    /// A record to build: key, value, headers.
    type Sent<'a> = (
        Option<&'a [u8]>,
        Option<&'a [u8]>,
        &'a [(&'a str, Option<&'a [u8]>)],
    );

    /// Adds one batch of `records`, all with timestamp 7, to `out`.
    fn records(topic: &Arc<str>, partition: i32, out: &mut ConsumerRecords, records: &[Sent]) {
        let mut b = BatchBuilder::new(1 << 20);
        for (k, v, h) in records {
            assert!(b.try_append(7, *k, *v, h));
        }
        let built = b.build(-1, -1, -1, Compression::Lz4).unwrap();
        for batch in DecodedBatches::new(built, 1 << 20) {
            let mut iter = batch.unwrap().records;
            let index = out.add_batch(topic, partition, iter.data());
            while let Some(span) = iter.next_span() {
                out.push(index, span.unwrap());
            }
        }
    }

    #[test]
    fn records_read_in_place_are_the_records_sent() {
        let mut out = ConsumerRecords::default();
        assert!(out.is_empty());
        let (t, u): (Arc<str>, Arc<str>) = ("t".into(), "u".into());
        records(
            &t,
            3,
            &mut out,
            &[(Some(b"k"), Some(b"v0"), &[("h", Some(b"x")), ("n", None)])],
        );
        records(
            &u,
            0,
            &mut out,
            &[(None, Some(b"v1"), &[]), (Some(b""), None, &[])],
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out.iter().len(), 3);
        let read: Vec<_> = out
            .iter()
            .map(|r| (r.topic, r.partition, r.offset, r.timestamp, r.key, r.value))
            .collect();
        assert_eq!(
            read,
            vec![
                ("t", 3, 0, 7, Some(&b"k"[..]), Some(&b"v0"[..])),
                ("u", 0, 0, 7, None, Some(&b"v1"[..])),
                ("u", 0, 1, 7, Some(&b""[..]), None),
            ]
        );
        let first = out.iter().next().unwrap();
        // Debug shows records, not the batches' bytes.
        assert!(format!("{out:?}").len() < 100, "{out:?}");
        assert!(format!("{first:?}").contains("offset: 0"), "{first:?}");
        let headers: Vec<_> = first.headers().collect();
        assert_eq!(
            headers,
            vec![("h".into(), Some(&b"x"[..])), ("n".into(), None)]
        );

        let owned = out.to_vec();
        assert_eq!(owned.len(), 3);
        assert_eq!(&*owned[0].topic, "t");
        assert_eq!(owned[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(
            owned[0].headers,
            vec![
                ("h".to_string(), Some(Bytes::from_static(b"x"))),
                ("n".to_string(), None)
            ]
        );
        assert_eq!(owned[2].value, None);
        assert_eq!(
            (&out)
                .into_iter()
                .map(|r| r.to_record())
                .collect::<Vec<_>>(),
            owned
        );
    }
}
