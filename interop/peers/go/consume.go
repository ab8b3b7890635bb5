package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// produceNumbered sends n records with values "0".."n-1" to partition 0 of topic, in order; stamp, when not nil,
// gives record i its CreateTime.
func (p *peer) produceNumbered(ctx context.Context, topic string, n int, stamp func(i int) time.Time) error {
	records := make([]*kgo.Record, n)
	for i := range records {
		records[i] = &kgo.Record{Topic: topic, Value: []byte(strconv.Itoa(i))}
		if stamp != nil {
			records[i].Timestamp = stamp(i)
		}
	}
	return produceSync(ctx, p.newClient(), records...)
}

// checkNumbered checks that got holds exactly the records at offsets first..last of partition 0, in order, each
// with its offset as its value.
func checkNumbered(got []*kgo.Record, first, last int64) error {
	if want := int(last - first + 1); len(got) != want {
		return fmt.Errorf("read %d records, want %d (offsets %d..%d)", len(got), want, first, last)
	}
	for i, r := range got {
		want := first + int64(i)
		if r.Partition != 0 || r.Offset != want || string(r.Value) != strconv.FormatInt(want, 10) {
			return fmt.Errorf("record %d: want partition 0 offset %d value %q, read %s", i, want, strconv.FormatInt(want, 10), describe(r))
		}
	}
	return nil
}

// consumeOffsets: ListOffsets earliest/latest, then a group-less consumer sought to offset 42 reads 42..99 only.
func consumeOffsets(ctx context.Context, p *peer) error {
	topic := p.prefix + "-offsets"
	if err := p.createTopic(ctx, topic, 1, nil); err != nil {
		return err
	}
	if err := p.produceNumbered(ctx, topic, 100, nil); err != nil {
		return err
	}
	starts, err := p.adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("list start offsets: %w", err)
	}
	if o, _ := starts.Lookup(topic, 0); o.Offset != 0 {
		return fmt.Errorf("earliest offset of %s/0: want 0, got %d", topic, o.Offset)
	}
	ends, err := p.endOffsets(ctx, topic)
	if err != nil {
		return err
	}
	if ends[0] != 100 {
		return fmt.Errorf("latest offset of %s/0: want 100, got %d", topic, ends[0])
	}
	ok("ListOffsets: earliest 0, latest 100")

	// consumeUntil assigns partition 0 directly (ConsumePartitions, no group) at offset 42 and fails on any
	// record outside 42..99.
	got, err := p.consumeUntil(ctx, topic, map[int32]int64{0: 42}, map[int32]int64{0: 100})
	if err != nil {
		return err
	}
	if err := checkNumbered(got, 42, 99); err != nil {
		return err
	}
	ok("assigned consumer sought to 42 read offsets 42..99 with values 42..99 and nothing before 42")
	return nil
}

// consumeTimestamp: offsets for timestamps (before, inside and after the records), then reading from one.
func consumeTimestamp(ctx context.Context, p *peer) error {
	topic := p.prefix + "-ts"
	if err := p.createTopic(ctx, topic, 1, nil); err != nil {
		return err
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	stampOf := func(i int) int64 { return t0 + int64(i)*1000 }
	if err := p.produceNumbered(ctx, topic, 100, func(i int) time.Time { return time.UnixMilli(stampOf(i)) }); err != nil {
		return err
	}
	ok("produced 100 records with CreateTime T0 + i*1000, T0 = %d", t0)

	var startAt int64 // the offset listed for T0+50500
	for _, c := range []struct {
		at   int64
		want int64
	}{{t0 + 50500, 51}, {t0, 0}} {
		listed, err := p.adm.ListOffsetsAfterMilli(ctx, c.at, topic)
		if err == nil {
			err = listed.Error()
		}
		if err != nil {
			return fmt.Errorf("list offsets after %d: %w", c.at, err)
		}
		if o, _ := listed.Lookup(topic, 0); o.Offset != c.want {
			return fmt.Errorf("offset for timestamp T0+%d: want %d, got %d (timestamp %d)", c.at-t0, c.want, o.Offset, o.Timestamp)
		}
		if c.at == t0+50500 {
			startAt = c.want
		}
		ok("offset for timestamp T0+%d is %d", c.at-t0, c.want)
	}

	// After the last record there is no offset. kadm turns the broker's -1 into the end offset (documented), so the
	// broker's own answer is checked with a plain ListOffsets request as well.
	after := t0 + 200000
	listed, err := p.adm.ListOffsetsAfterMilli(ctx, after, topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return fmt.Errorf("list offsets after %d: %w", after, err)
	}
	if o, _ := listed.Lookup(topic, 0); o.Offset != 100 {
		return fmt.Errorf("kadm offset for timestamp T0+200000: want the end offset 100, got %d", o.Offset)
	}
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition = 0
	rp.Timestamp = after
	rp.CurrentLeaderEpoch = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, p.cl)
	if err != nil {
		return fmt.Errorf("ListOffsets request for timestamp T0+200000: %w", err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return fmt.Errorf("ListOffsets for timestamp T0+200000: want one partition in the answer, got %+v", resp.Topics)
	}
	if part := resp.Topics[0].Partitions[0]; part.ErrorCode != 0 || part.Offset != -1 {
		return fmt.Errorf("ListOffsets for timestamp T0+200000: want offset -1 (none), got offset %d timestamp %d error %d",
			part.Offset, part.Timestamp, part.ErrorCode)
	}
	ok("offset for timestamp T0+200000 is none: broker answers -1, kadm reports the end offset 100")

	// Start a consumer at the offset listed for T0+50500 (checked to be 51 above), as an application would.
	got, err := p.consumeUntil(ctx, topic, map[int32]int64{0: startAt}, map[int32]int64{0: 100})
	if err != nil {
		return err
	}
	if err := checkNumbered(got, 51, 99); err != nil {
		return err
	}
	for _, r := range got {
		want := stampOf(int(r.Offset))
		if r.Timestamp.UnixMilli() != want || r.Attrs.TimestampType() != 0 {
			return fmt.Errorf("record %s: want CreateTime %d, got %d (timestamp type %d)",
				describe(r), want, r.Timestamp.UnixMilli(), r.Attrs.TimestampType())
		}
	}
	ok("consumer started at offset %d read 51..99, each with its CreateTime", startAt)
	return nil
}
