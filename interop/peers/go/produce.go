package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// codecs in the order the scenario produces them; attr is the compression type a batch carries in its attributes.
var codecs = []struct {
	name  string
	codec kgo.CompressionCodec
	attr  uint8
}{
	{"none", kgo.NoCompression(), 0},
	{"gzip", kgo.GzipCompression(), 1},
	{"snappy", kgo.SnappyCompression(), 2},
	{"lz4", kgo.Lz4Compression(), 3},
	{"zstd", kgo.ZstdCompression(), 4},
}

// produceCodecs: 20 records with each codec into one partition, read back in order with exact keys and values.
func produceCodecs(ctx context.Context, p *peer) error {
	topic := p.prefix + "-codecs"
	if err := p.createTopic(ctx, topic, 1, nil); err != nil {
		return err
	}
	for _, c := range codecs {
		// A linger makes the 20 records one batch: franz-go sends a batch uncompressed when compressing does not
		// make it smaller, which a batch of a single tiny record may not be.
		producer := p.newClient(kgo.ProducerBatchCompression(c.codec), kgo.ProducerLinger(50*time.Millisecond))
		records := make([]*kgo.Record, 20)
		for i := range records {
			records[i] = &kgo.Record{
				Topic: topic,
				Key:   []byte(fmt.Sprintf("k-%s-%d", c.name, i)),
				Value: []byte(fmt.Sprintf("v-%s-%d", c.name, i)),
			}
		}
		if err := produceAsync(ctx, producer, records); err != nil {
			return fmt.Errorf("codec %s: %w", c.name, err)
		}
		producer.Close()
		ok("produced 20 records with %s", c.name)
	}

	got, err := p.consumeUntil(ctx, topic, map[int32]int64{0: 0}, map[int32]int64{0: 100})
	if err != nil {
		return err
	}
	if len(got) != 100 {
		return fmt.Errorf("read %d records from %s, want 100", len(got), topic)
	}
	for i, r := range got {
		c := codecs[i/20]
		wantKey, wantValue := fmt.Sprintf("k-%s-%d", c.name, i%20), fmt.Sprintf("v-%s-%d", c.name, i%20)
		if r.Offset != int64(i) || string(r.Key) != wantKey || string(r.Value) != wantValue {
			return fmt.Errorf("record %d: want offset %d key %q value %q, read %s", i, i, wantKey, wantValue, describe(r))
		}
		if got := r.Attrs.CompressionType(); got != c.attr {
			return fmt.Errorf("record %d (%s) came in a batch with compression type %d, want %d (%s)",
				i, describe(r), got, c.attr, c.name)
		}
	}
	ok("read all 100 records in produce order, offsets 0..99, keys and values exact, each batch with its codec")
	return nil
}

// produceHeadersNulls: null vs empty keys, values and header values, and repeated headers in order, round trip.
func produceHeadersNulls(ctx context.Context, p *peer) error {
	topic := p.prefix + "-hdr"
	if err := p.createTopic(ctx, topic, 1, nil); err != nil {
		return err
	}
	sent := []*kgo.Record{
		{Key: []byte("a"), Value: []byte("1"), Headers: []kgo.RecordHeader{
			{Key: "h1", Value: []byte("x")}, {Key: "h2", Value: []byte("y")}, {Key: "h1", Value: []byte("z")},
		}},
		{Key: []byte("b"), Value: nil},
		{Key: nil, Value: []byte("3")},
		{Key: []byte("d"), Value: []byte{}},
		{Key: []byte("e"), Value: []byte("5"), Headers: []kgo.RecordHeader{{Key: "e", Value: nil}}},
	}
	// Copies are produced: franz-go fills in the produced records, and the originals stay what was meant.
	toSend := make([]*kgo.Record, len(sent))
	for i, r := range sent {
		toSend[i] = &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: r.Headers}
	}
	if err := produceSync(ctx, p.newClient(), toSend...); err != nil {
		return err
	}
	ok("produced 5 records with headers, null and empty keys and values")

	got, err := p.consumeUntil(ctx, topic, map[int32]int64{0: 0}, map[int32]int64{0: int64(len(sent))})
	if err != nil {
		return err
	}
	if len(got) != len(sent) {
		return fmt.Errorf("read %d records from %s, want %d", len(got), topic, len(sent))
	}
	for i, want := range sent {
		r := got[i]
		if r.Offset != int64(i) || !sameBytes(r.Key, want.Key) || !sameBytes(r.Value, want.Value) {
			return fmt.Errorf("record %d: want offset %d key %s value %s, read %s",
				i, i, show(want.Key), show(want.Value), describe(r))
		}
		if len(r.Headers) != len(want.Headers) {
			return fmt.Errorf("record %d: want %d headers, read %s", i, len(want.Headers), describe(r))
		}
		for j, h := range want.Headers {
			if r.Headers[j].Key != h.Key || !sameBytes(r.Headers[j].Value, h.Value) {
				return fmt.Errorf("record %d header %d: want %s=%s, read %s", i, j, h.Key, show(h.Value), describe(r))
			}
		}
	}
	ok("read back all 5: keys, values, null vs empty, header names, values (one null), order and duplicates exact")
	return nil
}

// produceIdempotent: 1000 keyed records from an idempotent producer with acks=all over 3 partitions; read back
// exactly once each, in order within each partition, each key in the partition it was acknowledged in.
func produceIdempotent(ctx context.Context, p *peer) error {
	topic := p.prefix + "-idem"
	const n = 1000
	if err := p.createTopic(ctx, topic, 3, nil); err != nil {
		return err
	}
	// franz-go is idempotent unless DisableIdempotentWrite is given, and idempotence requires acks=all; both are
	// spelled out here so that a change of defaults cannot silently weaken the scenario.
	producer := p.newClient(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(5*time.Millisecond))
	records := make([]*kgo.Record, n)
	for i := range records {
		records[i] = &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("key-%d", i)), Value: []byte(strconv.Itoa(i))}
	}
	if err := produceAsync(ctx, producer, records); err != nil {
		return err
	}
	ackedPartition := make(map[string]int32, n)
	for _, r := range records {
		if r.ProducerID < 0 {
			return fmt.Errorf("record %s was sent without a producer id (%d): not idempotent", describe(r), r.ProducerID)
		}
		ackedPartition[string(r.Key)] = r.Partition
	}
	ok("produced %d records idempotently (producer id %d, epoch %d)", n, records[0].ProducerID, records[0].ProducerEpoch)

	got, err := p.consumeAll(ctx, topic)
	if err != nil {
		return err
	}
	if len(got) != n {
		return fmt.Errorf("read %d records from %s, want exactly %d", len(got), topic, n)
	}
	seen := make(map[int]bool, n)
	lastValue := map[int32]int{}
	perPartition := map[int32]int{}
	for _, r := range got {
		v, err := strconv.Atoi(string(r.Value))
		if err != nil || string(r.Key) != fmt.Sprintf("key-%d", v) {
			return fmt.Errorf("record %s: value is not the number in its key", describe(r))
		}
		if seen[v] {
			return fmt.Errorf("duplicate record %s", describe(r))
		}
		seen[v] = true
		if last, any := lastValue[r.Partition]; any && v <= last {
			return fmt.Errorf("partition %d: value %d follows %d (%s): values must increase", r.Partition, v, last, describe(r))
		}
		lastValue[r.Partition] = v
		if want := ackedPartition[string(r.Key)]; r.Partition != want {
			return fmt.Errorf("record %s was acknowledged in partition %d", describe(r), want)
		}
		perPartition[r.Partition]++
	}
	ok("read exactly %d records, no duplicates, values increasing in each partition %v, keys where acknowledged",
		n, perPartition)
	return nil
}
