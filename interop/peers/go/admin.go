package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// adminTopics: create with a config, list, describe, describe configs, create again (TOPIC_ALREADY_EXISTS), add
// partitions, delete.
func adminTopics(ctx context.Context, p *peer) error {
	topic := p.prefix + "-adm"
	retention := "3600000"
	if err := p.createTopic(ctx, topic, 2, map[string]*string{"retention.ms": &retention}); err != nil {
		return err
	}
	ok("created %s with 2 partitions and retention.ms=%s", topic, retention)

	all, err := p.adm.ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	if !all.Has(topic) {
		return fmt.Errorf("%s is not listed; listed: %v", topic, all.Names())
	}
	ok("%s is listed", topic)
	// createTopic waited until metadata described the topic with 2 led partitions.
	ok("%s is described with 2 partitions", topic)

	configs, err := p.adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return fmt.Errorf("describe configs of %s: %w", topic, err)
	}
	rc, err := configs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return fmt.Errorf("describe configs of %s: %w", topic, err)
	}
	var seen *string
	for _, c := range rc.Configs {
		if c.Key == "retention.ms" {
			seen = c.Value
		}
	}
	if seen == nil || *seen != retention {
		return fmt.Errorf("config retention.ms of %s: want %s, got %v", topic, retention, showString(seen))
	}
	ok("its config shows retention.ms=%s", retention)

	again, err := p.adm.CreateTopic(ctx, 2, 1, nil, topic)
	if err == nil {
		err = again.Err
	}
	if !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("creating %s again: want TOPIC_ALREADY_EXISTS, got %v", topic, err)
	}
	ok("creating it again fails with TOPIC_ALREADY_EXISTS")

	grown, err := p.adm.UpdatePartitions(ctx, 4, topic)
	if err == nil {
		err = grown.Error()
	}
	if err != nil {
		return fmt.Errorf("grow %s to 4 partitions: %w", topic, err)
	}
	if err := p.waitTopicPartitions(ctx, topic, 4); err != nil {
		return err
	}
	ok("added partitions: described with 4")

	deleted, err := p.adm.DeleteTopic(ctx, topic)
	if err == nil {
		err = deleted.Err
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", topic, err)
	}
	err = waitFor(ctx, topic+" to be gone from the listing and from metadata", func(ctx context.Context) (bool, string) {
		all, err := p.adm.ListTopics(ctx)
		if err != nil {
			return false, err.Error()
		}
		if all.Has(topic) {
			return false, "still listed"
		}
		one, err := p.adm.ListTopics(ctx, topic)
		if err != nil {
			return false, err.Error()
		}
		if td := one[topic]; !errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
			return false, fmt.Sprintf("metadata for it answers error %v with %d partitions", td.Err, len(td.Partitions))
		}
		return true, ""
	})
	if err != nil {
		return err
	}
	ok("deleted: no longer listed, metadata answers UNKNOWN_TOPIC_OR_PARTITION")
	return nil
}

func showString(s *string) string {
	if s == nil {
		return "<null>"
	}
	return fmt.Sprintf("%q", *s)
}

// adminGroups: list, describe (state, protocol type, member assignment), group offsets, describe after the member
// left, delete.
func adminGroups(ctx context.Context, p *peer) error {
	topic, group := p.prefix+"-ag", p.prefix+"-g"
	if err := p.createTopic(ctx, topic, 2, nil); err != nil {
		return err
	}
	records := []*kgo.Record{
		{Topic: topic, Partition: 0, Value: []byte("p0")},
		{Topic: topic, Partition: 1, Value: []byte("p1")},
	}
	if err := produceSync(ctx, p.newClient(kgo.RecordPartitioner(kgo.ManualPartitioner())), records...); err != nil {
		return err
	}

	consumer := p.newMember("consumer", group, topic)
	if err := waitOwns(ctx, consumer, 2); err != nil {
		return err
	}
	read := map[int32]int64{}
	var pollErr error
	err := waitFor(ctx, "the consumer to read the record of each partition", func(ctx context.Context) (bool, string) {
		var got []*kgo.Record
		if got, pollErr = consumer.poll(ctx, 100*time.Millisecond); pollErr != nil {
			return true, ""
		}
		for _, r := range got {
			read[r.Partition] = r.Offset
		}
		return len(read) == 2, fmt.Sprintf("read offsets %v", read)
	})
	if err == nil {
		err = pollErr
	}
	if err != nil {
		return err
	}
	if err := consumer.cl.CommitUncommittedOffsets(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	ok("the consumer owns both partitions, read one record of each and committed")

	listed, err := p.adm.ListGroups(ctx)
	if err != nil {
		return fmt.Errorf("list groups: %w", err)
	}
	if _, found := listed[group]; !found {
		return fmt.Errorf("%s is not among the listed groups %v", group, listed.Groups())
	}
	ok("list groups contains %s", group)

	// The member joined before this point, so the group is Stable unless a rebalance is still settling.
	var described kadm.DescribedGroup
	err = waitFor(ctx, group+" to be described as Stable with one member", func(ctx context.Context) (bool, string) {
		var state string
		described, state = p.describeGroup(ctx, group)
		return described.State == "Stable" && len(described.Members) == 1, state
	})
	if err != nil {
		return err
	}
	if described.ProtocolType != "consumer" {
		return fmt.Errorf("%s: want protocol type consumer, got %q", group, described.ProtocolType)
	}
	assigned, decoded := described.Members[0].Assigned.AsConsumer()
	if !decoded {
		return fmt.Errorf("%s: the member's assignment did not decode as a consumer assignment", group)
	}
	var parts []int32
	for _, t := range assigned.Topics {
		if t.Topic != topic {
			return fmt.Errorf("%s: member is assigned topic %s, want only %s", group, t.Topic, topic)
		}
		parts = append(parts, t.Partitions...)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	if fmt.Sprint(parts) != "[0 1]" {
		return fmt.Errorf("%s: member is assigned partitions %v of %s, want [0 1]", group, parts, topic)
	}
	ok("describe: state Stable, protocol type consumer, one member assigned partitions 0 and 1")

	offsets, err := p.adm.FetchOffsets(ctx, group)
	if err == nil {
		err = offsets.Error()
	}
	if err != nil {
		return fmt.Errorf("fetch offsets of %s: %w", group, err)
	}
	for part := int32(0); part < 2; part++ {
		if o, found := offsets.Lookup(topic, part); !found || o.At != 1 {
			return fmt.Errorf("group offset of %s/%d: want 1, got %+v (found %v)", topic, part, o, found)
		}
	}
	ok("group offsets listed by the admin API are 1 and 1")

	consumer.cl.Close()
	err = waitFor(ctx, group+" to be described as Empty", func(ctx context.Context) (bool, string) {
		d, state := p.describeGroup(ctx, group)
		return d.State == "Empty", state
	})
	if err != nil {
		return err
	}
	ok("after the consumer closed, describe shows Empty")

	deleted, err := p.adm.DeleteGroup(ctx, group)
	if err == nil {
		err = deleted.Err
	}
	if err != nil {
		return fmt.Errorf("delete group %s: %w", group, err)
	}
	err = waitFor(ctx, group+" to be no longer listed", func(ctx context.Context) (bool, string) {
		listed, err := p.adm.ListGroups(ctx)
		if err != nil {
			return false, err.Error()
		}
		_, found := listed[group]
		return !found, fmt.Sprintf("listed: %v", listed.Groups())
	})
	if err != nil {
		return err
	}
	ok("deleted the group: no longer listed")
	return nil
}

// describeGroup describes one group; the string tells what was seen, for timeouts.
func (p *peer) describeGroup(ctx context.Context, group string) (kadm.DescribedGroup, string) {
	described, err := p.adm.DescribeGroups(ctx, group)
	if err != nil {
		return kadm.DescribedGroup{}, "describe groups: " + err.Error()
	}
	d := described[group]
	if d.Err != nil {
		return d, "describe: " + d.Err.Error()
	}
	return d, fmt.Sprintf("state %q, protocol type %q, %d members", d.State, d.ProtocolType, len(d.Members))
}
