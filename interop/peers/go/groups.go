package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// member is one group consumer (classic group protocol, franz-go's default balancer, auto commit off) and the
// partitions it owns, as its rebalance callbacks report them.
type member struct {
	name string
	cl   *kgo.Client

	mu    sync.Mutex
	owned map[int32]bool
}

func (p *peer) newMember(name, group, topic string) *member {
	m := &member{name: name, owned: map[int32]bool{}}
	update := func(add bool) func(context.Context, *kgo.Client, map[string][]int32) {
		return func(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, part := range parts[topic] {
				if add {
					m.owned[part] = true
				} else {
					delete(m.owned, part)
				}
			}
		}
	}
	m.cl = p.newClient(
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(),
		// Records may be produced before a member's first fetch: without a committed offset, start at the start.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(update(true)),
		kgo.OnPartitionsRevoked(update(false)),
		kgo.OnPartitionsLost(update(false)),
	)
	return m
}

// ownedNow is the set of partitions the member owns at the moment.
func (m *member) ownedNow() map[int32]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[int32]bool, len(m.owned))
	for part := range m.owned {
		out[part] = true
	}
	return out
}

// poll returns what the member fetched within d. A poll that times out without records is no error.
func (m *member) poll(ctx context.Context, d time.Duration) ([]*kgo.Record, error) {
	pollCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	fetches := m.cl.PollFetches(pollCtx)
	var err error
	fetches.EachError(func(t string, part int32, e error) {
		if errors.Is(e, context.DeadlineExceeded) || errors.Is(e, context.Canceled) {
			return // our own poll timeout
		}
		err = fmt.Errorf("%s: fetch %s/%d: %w", m.name, t, part, e)
	})
	return fetches.Records(), err
}

// groupRebalance: two members split 4 partitions, read 100 records exactly once between them and commit; one
// leaves, the other takes all partitions over and reads only the 40 records produced afterwards.
func groupRebalance(ctx context.Context, p *peer) error {
	topic, group := p.prefix+"-grp", p.prefix+"-g"
	if err := p.createTopic(ctx, topic, 4, nil); err != nil {
		return err
	}
	a := p.newMember("A", group, topic)
	b := p.newMember("B", group, topic)
	members := []*member{a, b}

	// Records fetched before the 100 are produced would be a bug: collect everything from the start.
	seen := map[string]string{} // key -> which member read it
	collect := func(m *member, records []*kgo.Record) error {
		for _, r := range records {
			key := string(r.Key)
			if other, dup := seen[key]; dup {
				return fmt.Errorf("%s read %s, which %s had read already", m.name, describe(r), other)
			}
			seen[key] = m.name
		}
		return nil
	}
	pollAll := func(ctx context.Context, ms []*member) error {
		for _, m := range ms {
			records, err := m.poll(ctx, 100*time.Millisecond)
			if err != nil {
				return err
			}
			if err := collect(m, records); err != nil {
				return err
			}
		}
		return nil
	}

	var pollErr error
	err := waitFor(ctx, "A and B to own disjoint sets of partitions that cover all 4, each at least one",
		func(ctx context.Context) (bool, string) {
			if pollErr = pollAll(ctx, members); pollErr != nil {
				return true, ""
			}
			ownedA, ownedB := a.ownedNow(), b.ownedNow()
			state := fmt.Sprintf("A owns %v, B owns %v", sortedPartitions(ownedA), sortedPartitions(ownedB))
			if len(ownedA) == 0 || len(ownedB) == 0 || len(ownedA)+len(ownedB) != 4 {
				return false, state
			}
			for part := range ownedA {
				if ownedB[part] {
					return false, state
				}
			}
			return true, state
		})
	if err == nil {
		err = pollErr
	}
	if err != nil {
		return err
	}
	if len(seen) != 0 {
		return fmt.Errorf("members read %d records before any was produced", len(seen))
	}
	ok("A owns %v and B owns %v", sortedPartitions(a.ownedNow()), sortedPartitions(b.ownedNow()))

	producer := p.newClient()
	first := make([]*kgo.Record, 100)
	for i := range first {
		first[i] = &kgo.Record{Topic: topic, Key: []byte("k-" + strconv.Itoa(i)), Value: []byte(strconv.Itoa(i))}
	}
	if err := produceSync(ctx, producer, first...); err != nil {
		return err
	}
	err = waitFor(ctx, "A and B to read the 100 records", func(ctx context.Context) (bool, string) {
		if pollErr = pollAll(ctx, members); pollErr != nil {
			return true, ""
		}
		return len(seen) == 100, fmt.Sprintf("%d of 100 read", len(seen))
	})
	if err == nil {
		err = pollErr
	}
	if err != nil {
		return err
	}
	byMember := map[string]int{}
	for _, who := range seen {
		byMember[who]++
	}
	if byMember["A"] == 0 || byMember["B"] == 0 {
		return fmt.Errorf("want both members to read records of their partitions, got %v", byMember)
	}
	ok("A and B together read each of the 100 records exactly once (%v)", byMember)

	for _, m := range members {
		if err := m.cl.CommitUncommittedOffsets(ctx); err != nil {
			return fmt.Errorf("%s: synchronous commit: %w", m.name, err)
		}
	}
	committed, err := p.adm.FetchOffsets(ctx, group)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		return fmt.Errorf("fetch committed offsets of %s: %w", group, err)
	}
	var total int64
	for part := int32(0); part < 4; part++ {
		o, _ := committed.Lookup(topic, part)
		total += o.At
	}
	if total != 100 {
		return fmt.Errorf("committed offsets of the 4 partitions add up to %d, want 100: %v", total, committed)
	}
	ok("A and B committed synchronously: committed offsets add up to 100")

	a.cl.Close() // leaves the group
	ok("A closed (left the group)")
	err = waitFor(ctx, "B to own all 4 partitions", func(ctx context.Context) (bool, string) {
		if pollErr = pollAll(ctx, []*member{b}); pollErr != nil {
			return true, ""
		}
		owned := b.ownedNow()
		return len(owned) == 4, fmt.Sprintf("B owns %v", sortedPartitions(owned))
	})
	if err == nil {
		err = pollErr
	}
	if err != nil {
		return err
	}
	ok("B owns all 4 partitions")

	more := make([]*kgo.Record, 40)
	for i := range more {
		n := 100 + i
		more[i] = &kgo.Record{Topic: topic, Key: []byte("k-" + strconv.Itoa(n)), Value: []byte(strconv.Itoa(n))}
	}
	if err := produceSync(ctx, producer, more...); err != nil {
		return err
	}
	// Records of a partition arrive in offset order, so any old record B read again would come before the new
	// records of its partition: once all 40 are in, nothing old can still be on its way.
	err = waitFor(ctx, "B to read the 40 new records", func(ctx context.Context) (bool, string) {
		if pollErr = pollAll(ctx, []*member{b}); pollErr != nil {
			return true, ""
		}
		return len(seen) == 140, fmt.Sprintf("%d of the 40 new records read", len(seen)-100)
	})
	if err == nil {
		err = pollErr
	}
	if err != nil {
		return err
	}
	ok("B read exactly the 40 new records and none of the first 100 again")
	return nil
}

// offsetsCommitFetch: a member commits 3 and 7 with metadata; OffsetFetch returns them; a new member starts there.
func offsetsCommitFetch(ctx context.Context, p *peer) error {
	topic, group := p.prefix+"-commit", p.prefix+"-g"
	if err := p.createTopic(ctx, topic, 2, nil); err != nil {
		return err
	}
	var records []*kgo.Record
	for part := int32(0); part < 2; part++ {
		for i := 0; i < 10; i++ {
			records = append(records, &kgo.Record{Topic: topic, Partition: part, Value: []byte(strconv.Itoa(i))})
		}
	}
	if err := produceSync(ctx, p.newClient(kgo.RecordPartitioner(kgo.ManualPartitioner())), records...); err != nil {
		return err
	}
	ok("produced 10 records to each of the 2 partitions")

	first := p.newMember("first", group, topic)
	if err := waitOwns(ctx, first, 2); err != nil {
		return err
	}
	// The member reads the partitions before it commits, as applications do; franz-go tracks (and reports in
	// CommittedOffsets) only partitions it has consumed from or found a committed offset for.
	if _, err := readFirstOffsets(ctx, first, 10); err != nil {
		return err
	}
	want := map[int32]struct {
		offset   int64
		metadata string
	}{0: {3, "m0"}, 1: {7, "m1"}}
	toCommit := map[string]map[int32]kgo.EpochOffset{topic: {}}
	for part, w := range want {
		toCommit[topic][part] = kgo.EpochOffset{Epoch: -1, Offset: w.offset}
	}
	// franz-go's commit API has no metadata argument; its documented hook to add metadata is a function that
	// edits the OffsetCommit request just before it is sent.
	withMetadata := kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		for i := range req.Topics {
			for j := range req.Topics[i].Partitions {
				part := &req.Topics[i].Partitions[j]
				md := want[part.Partition].metadata
				part.Metadata = &md
			}
		}
		return nil
	})
	var commitErr error
	first.cl.CommitOffsetsSync(withMetadata, toCommit,
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				commitErr = err
				return
			}
			for _, t := range resp.Topics {
				for _, part := range t.Partitions {
					if part.ErrorCode != 0 {
						commitErr = fmt.Errorf("partition %d: error code %d", part.Partition, part.ErrorCode)
					}
				}
			}
		})
	if commitErr != nil {
		return fmt.Errorf("commit offsets 3 and 7 with metadata: %w", commitErr)
	}
	ok("the member committed offset 3 (metadata m0) for partition 0 and 7 (m1) for partition 1")

	clientView := first.cl.CommittedOffsets()[topic]
	if clientView[0].Offset != 3 || clientView[1].Offset != 7 {
		return fmt.Errorf("client's committed offsets: want 3 and 7, got %v", clientView)
	}
	fetched, err := p.adm.FetchOffsets(ctx, group)
	if err == nil {
		err = fetched.Error()
	}
	if err != nil {
		return fmt.Errorf("fetch offsets of %s: %w", group, err)
	}
	for part, w := range want {
		o, found := fetched.Lookup(topic, part)
		if !found || o.At != w.offset || o.Metadata != w.metadata {
			return fmt.Errorf("OffsetFetch for partition %d: want offset %d metadata %q, got %+v (found %v)",
				part, w.offset, w.metadata, o, found)
		}
	}
	ok("committed offsets (client) are 3 and 7; OffsetFetch returns 3/m0 and 7/m1")

	first.cl.Close()
	ok("the first member closed")

	second := p.newMember("second", group, topic)
	firstRead, err := readFirstOffsets(ctx, second, 1)
	if err != nil {
		return err
	}
	if firstRead[0] != 3 || firstRead[1] != 7 {
		return fmt.Errorf("the new member started at %v, want partition 0 at 3 and partition 1 at 7", firstRead)
	}
	ok("the new member in the group started at offset 3 (partition 0) and 7 (partition 1)")
	return nil
}

// waitOwns waits until m owns n partitions.
func waitOwns(ctx context.Context, m *member, n int) error {
	return waitFor(ctx, fmt.Sprintf("%s to own %d partitions", m.name, n), func(context.Context) (bool, string) {
		owned := m.ownedNow()
		return len(owned) == n, fmt.Sprintf("owns %v", sortedPartitions(owned))
	})
}

// readFirstOffsets polls m until it has read n records of each of the 2 partitions of the scenario's topic, and
// returns the offset of the first record it read from each.
func readFirstOffsets(ctx context.Context, m *member, n int) (map[int32]int64, error) {
	firstRead := map[int32]int64{}
	count := map[int32]int{}
	var pollErr error
	err := waitFor(ctx, fmt.Sprintf("%s to read %d records of each partition", m.name, n),
		func(ctx context.Context) (bool, string) {
			var records []*kgo.Record
			if records, pollErr = m.poll(ctx, 100*time.Millisecond); pollErr != nil {
				return true, ""
			}
			for _, r := range records {
				if _, seen := firstRead[r.Partition]; !seen {
					firstRead[r.Partition] = r.Offset
				}
				count[r.Partition]++
			}
			return len(count) == 2 && count[0] >= n && count[1] >= n,
				fmt.Sprintf("records read per partition %v, first offsets %v", count, firstRead)
		})
	if err == nil {
		err = pollErr
	}
	return firstRead, err
}
