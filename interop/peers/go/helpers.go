package main

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// createTopic creates a topic through the admin API (replication factor 1) and waits until metadata shows it
// with every partition led.
func (p *peer) createTopic(ctx context.Context, topic string, partitions int32, configs map[string]*string) error {
	resp, err := p.adm.CreateTopic(ctx, partitions, 1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create topic %s with %d partitions: %w", topic, partitions, err)
	}
	return p.waitTopicPartitions(ctx, topic, partitions)
}

// waitTopicPartitions waits until metadata shows topic with exactly n partitions, each with a leader.
func (p *peer) waitTopicPartitions(ctx context.Context, topic string, n int32) error {
	return waitFor(ctx, fmt.Sprintf("metadata to show %s with %d led partitions", topic, n),
		func(ctx context.Context) (bool, string) {
			details, err := p.adm.ListTopics(ctx, topic)
			if err != nil {
				return false, err.Error()
			}
			td, found := details[topic]
			if !found {
				return false, "topic not in metadata"
			}
			if td.Err != nil {
				return false, td.Err.Error()
			}
			if int32(len(td.Partitions)) != n {
				return false, fmt.Sprintf("%d partitions", len(td.Partitions))
			}
			for _, pd := range td.Partitions {
				if pd.Err != nil || pd.Leader < 0 {
					return false, fmt.Sprintf("partition %d: leader %d, error %v", pd.Partition, pd.Leader, pd.Err)
				}
			}
			return true, ""
		})
}

// produceAsync hands every record to cl without waiting (so the client batches them as it would in production
// use), then flushes and returns the first error any record got. On success each record carries the partition and
// offset the broker assigned, and the producer id it was sent with.
func produceAsync(ctx context.Context, cl *kgo.Client, records []*kgo.Record) error {
	var mu sync.Mutex
	var firstErr error
	for _, r := range records {
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("produce key=%s: %w", show(r.Key), err)
				}
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return firstErr
}

// produceSync sends records in order and waits until each is acknowledged; the first produce error is returned.
func produceSync(ctx context.Context, cl *kgo.Client, records ...*kgo.Record) error {
	if err := cl.ProduceSync(ctx, records...).FirstErr(); err != nil {
		return fmt.Errorf("produce %d records: %w", len(records), err)
	}
	return nil
}

// consumeUntil reads the given partitions of topic (direct assignment, no group) from the given start offsets
// until each partition has reached its offset in until, and returns the records in the order they arrived.
// It fails if a record arrives at or beyond the until offset of its partition, or on any fetch error.
func (p *peer) consumeUntil(ctx context.Context, topic string, from, until map[int32]int64) ([]*kgo.Record, error) {
	starts := make(map[int32]kgo.Offset, len(from))
	for part, off := range from {
		starts[part] = kgo.NewOffset().At(off)
	}
	cl := p.newClient(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: starts}))
	defer cl.Close()

	next := make(map[int32]int64, len(from))
	for part, off := range from {
		next[part] = off
	}
	reached := func() bool {
		for part, end := range until {
			if next[part] < end {
				return false
			}
		}
		return true
	}
	var got []*kgo.Record
	pollCtx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	for !reached() {
		fetches := cl.PollFetches(pollCtx)
		if pollCtx.Err() != nil {
			return got, fmt.Errorf("timed out reading %s: next offsets %v, want %v (%d records read)",
				topic, next, until, len(got))
		}
		var fetchErr error
		fetches.EachError(func(t string, part int32, err error) {
			fetchErr = fmt.Errorf("fetch %s/%d: %w", t, part, err)
		})
		if fetchErr != nil {
			return got, fetchErr
		}
		for _, r := range fetches.Records() {
			end, wanted := until[r.Partition]
			if !wanted || r.Offset >= end {
				return got, fmt.Errorf("unexpected record %s: wanted partitions/offsets below %v", describe(r), until)
			}
			got = append(got, r)
			next[r.Partition] = r.Offset + 1
		}
	}
	return got, nil
}

// endOffsets lists the high watermarks of every partition of topic.
func (p *peer) endOffsets(ctx context.Context, topic string) (map[int32]int64, error) {
	listed, err := p.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	if err := listed.Error(); err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	out := make(map[int32]int64)
	listed.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// consumeAll reads every record of every partition of topic, from offset 0 up to the current high watermarks.
func (p *peer) consumeAll(ctx context.Context, topic string) ([]*kgo.Record, error) {
	ends, err := p.endOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	from := make(map[int32]int64, len(ends))
	for part := range ends {
		from[part] = 0
	}
	return p.consumeUntil(ctx, topic, from, ends)
}

// describe prints a record for error messages: position, key, value and headers, nulls shown as <null>.
func describe(r *kgo.Record) string {
	var hs []string
	for _, h := range r.Headers {
		hs = append(hs, h.Key+"="+show(h.Value))
	}
	return fmt.Sprintf("%s/%d@%d key=%s value=%s headers=[%s]", r.Topic, r.Partition, r.Offset,
		show(r.Key), show(r.Value), strings.Join(hs, ","))
}

// show prints bytes quoted, with nil shown as <null> so that null and empty differ.
func show(b []byte) string {
	if b == nil {
		return "<null>"
	}
	return fmt.Sprintf("%q", b)
}

// sameBytes compares byte slices telling null (nil) from empty.
func sameBytes(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}

// sortedPartitions lists a set of partitions in order, for messages.
func sortedPartitions(set map[int32]bool) []int32 {
	out := make([]int32, 0, len(set))
	for part := range set {
		out = append(out, part)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
