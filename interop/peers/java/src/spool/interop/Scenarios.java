package spool.interop;

import static spool.interop.Checks.WAIT;
import static spool.interop.Checks.await;
import static spool.interop.Checks.awaitFailure;
import static spool.interop.Checks.check;
import static spool.interop.Checks.expectBytes;
import static spool.interop.Checks.expectEq;
import static spool.interop.Checks.ok;
import static spool.interop.Checks.show;
import static spool.interop.Checks.utf8;
import static spool.interop.Clients.createTopic;
import static spool.interop.Clients.describeTopic;
import static spool.interop.Clients.partitions;
import static spool.interop.Clients.readUntil;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.Future;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ClassicGroupDescription;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;

/** The nine scenarios of interop/SCENARIOS.md, each a method that throws Checks.CheckFailed on the first miss. */
final class Scenarios {
    static final List<String> NAMES = List.of("produce-codecs", "produce-headers-nulls", "produce-idempotent",
            "consume-offsets", "consume-timestamp", "group-rebalance", "offsets-commit-fetch", "admin-topics",
            "admin-groups");
    /** Checks beyond the matrix's nine columns (they appear under "Further checks"). */
    static final List<String> EXTRAS = List.of("regex-subscribe", "regex-subscribe-broker");

    private final Peer.Options opts;
    private final Clients clients;

    Scenarios(Peer.Options opts) {
        this.opts = opts;
        this.clients = new Clients(opts);
    }

    void run(String name) throws Exception {
        switch (name) {
            case "produce-codecs" -> produceCodecs();
            case "produce-headers-nulls" -> produceHeadersNulls();
            case "produce-idempotent" -> produceIdempotent();
            case "consume-offsets" -> consumeOffsets();
            case "consume-timestamp" -> consumeTimestamp();
            case "group-rebalance" -> groupRebalance();
            case "offsets-commit-fetch" -> offsetsCommitFetch();
            case "admin-topics" -> adminTopics();
            case "admin-groups" -> adminGroups();
            case "regex-subscribe" -> regexSubscribe(false);
            case "regex-subscribe-broker" -> regexSubscribe(true);
            default -> throw new IllegalArgumentException("unknown scenario " + name);
        }
    }

    private String name(String suffix) {
        return opts.prefix + "-" + suffix;
    }

    private void createTopics(String topic, int partitions) {
        try (Admin admin = clients.admin()) {
            createTopic(admin, topic, partitions, Map.of());
        }
        ok("created topic " + topic + " with " + partitions + " partitions");
    }

    /** Sends every record, flushes, and returns the acknowledgements in send order (all must succeed). */
    private static List<RecordMetadata> sendAll(KafkaProducer<byte[], byte[]> producer,
            List<ProducerRecord<byte[], byte[]>> records) {
        List<Future<RecordMetadata>> acks = new ArrayList<>();
        for (ProducerRecord<byte[], byte[]> r : records) {
            acks.add(producer.send(r));
        }
        producer.flush();
        List<RecordMetadata> out = new ArrayList<>();
        for (int i = 0; i < acks.size(); i++) {
            out.add(await("send of record " + i + " (key " + show(records.get(i).key()) + ")", acks.get(i)));
        }
        return out;
    }

    /** Reads a one-partition topic from `from` to its end offset. */
    private List<ConsumerRecord<byte[], byte[]>> readPartition(TopicPartition tp, long from, long end) {
        try (KafkaConsumer<byte[], byte[]> c = clients.plainConsumer()) {
            c.assign(List.of(tp));
            c.seek(tp, from);
            return readUntil(c, Map.of(tp, end), WAIT);
        }
    }

    private static void expectOffsets(String what, List<ConsumerRecord<byte[], byte[]>> got, long first, long last) {
        List<Long> seen = got.stream().map(ConsumerRecord::offset).collect(Collectors.toList());
        List<Long> want = new ArrayList<>();
        for (long o = first; o <= last; o++) {
            want.add(o);
        }
        expectEq(what + " offsets", want, seen);
    }

    // ---- produce-codecs ------------------------------------------------------------------------------------------

    private void produceCodecs() {
        String topic = name("codecs");
        TopicPartition tp = new TopicPartition(topic, 0);
        createTopics(topic, 1);
        List<String> codecs = List.of("none", "gzip", "snappy", "lz4", "zstd");
        long nextOffset = 0;
        for (String codec : codecs) {
            List<ProducerRecord<byte[], byte[]>> batch = new ArrayList<>();
            for (int i = 0; i < 20; i++) {
                batch.add(new ProducerRecord<>(topic, 0, utf8("k-" + codec + "-" + i), utf8("v-" + codec + "-" + i)));
            }
            try (KafkaProducer<byte[], byte[]> p = clients.producer(Map.of("compression.type", codec))) {
                List<RecordMetadata> acks = sendAll(p, batch);
                for (int i = 0; i < acks.size(); i++) {
                    expectEq("acknowledged offset of k-" + codec + "-" + i, nextOffset + i, acks.get(i).offset());
                }
            }
            nextOffset += 20;
            ok("sent 20 records with compression.type=" + codec + ", acknowledged in order");
        }
        List<ConsumerRecord<byte[], byte[]>> got = readPartition(tp, 0, 100);
        expectOffsets("records read back", got, 0, 99);
        for (int n = 0; n < 100; n++) {
            String codec = codecs.get(n / 20);
            int i = n % 20;
            ConsumerRecord<byte[], byte[]> r = got.get(n);
            expectBytes("key at offset " + n, utf8("k-" + codec + "-" + i), r.key());
            expectBytes("value at offset " + n, utf8("v-" + codec + "-" + i), r.value());
        }
        ok("read back all 100 records at offsets 0..99 with exact keys and values");
    }

    // ---- produce-headers-nulls -----------------------------------------------------------------------------------

    private record Sent(byte[] key, byte[] value, List<Header> headers) {}

    private void produceHeadersNulls() {
        String topic = name("hdr");
        TopicPartition tp = new TopicPartition(topic, 0);
        createTopics(topic, 1);
        List<Sent> sent = List.of(
                new Sent(utf8("a"), utf8("1"), List.of(new RecordHeader("h1", utf8("x")),
                        new RecordHeader("h2", utf8("y")), new RecordHeader("h1", utf8("z")))),
                new Sent(utf8("b"), null, List.of()),
                new Sent(null, utf8("3"), List.of()),
                new Sent(utf8("d"), new byte[0], List.of()),
                // Java can express a header whose value is null (not empty).
                new Sent(utf8("e"), utf8("5"), List.of(new RecordHeader("e", (byte[]) null))));
        List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
        for (Sent s : sent) {
            records.add(new ProducerRecord<>(topic, 0, s.key(), s.value(), s.headers()));
        }
        try (KafkaProducer<byte[], byte[]> p = clients.producer(Map.of())) {
            sendAll(p, records);
        }
        ok("sent 5 records with headers, null key, null value, empty value, null header value");
        List<ConsumerRecord<byte[], byte[]>> got = readPartition(tp, 0, sent.size());
        expectOffsets("records read back", got, 0, sent.size() - 1);
        for (int i = 0; i < sent.size(); i++) {
            Sent s = sent.get(i);
            ConsumerRecord<byte[], byte[]> r = got.get(i);
            expectBytes("key of record " + i, s.key(), r.key());
            expectBytes("value of record " + i, s.value(), r.value());
            expectEq("headers of record " + i, showHeaders(s.headers()), showHeaders(List.of(r.headers().toArray())));
        }
        ok("read back keys, values, null vs empty and headers (order, duplicates, null value) exactly");
    }

    private static List<String> showHeaders(Collection<Header> headers) {
        return headers.stream().map(h -> h.key() + "=" + show(h.value())).collect(Collectors.toList());
    }

    // ---- produce-idempotent --------------------------------------------------------------------------------------

    private void produceIdempotent() {
        String topic = name("idem");
        createTopics(topic, 3);
        List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
        for (int i = 0; i < 1000; i++) {
            records.add(new ProducerRecord<>(topic, utf8("key-" + i), utf8(String.valueOf(i))));
        }
        List<RecordMetadata> acks;
        try (KafkaProducer<byte[], byte[]> p = clients.producer(Map.of("enable.idempotence", "true"))) {
            acks = sendAll(p, records);
        }
        ok("idempotent producer (enable.idempotence=true, acks=all) had all 1000 records acknowledged");

        List<TopicPartition> tps = partitions(topic, 3);
        Map<TopicPartition, Long> end = new HashMap<>();
        List<ConsumerRecord<byte[], byte[]>> got;
        try (KafkaConsumer<byte[], byte[]> c = clients.plainConsumer()) {
            c.assign(tps);
            c.seekToBeginning(tps);
            end.putAll(c.endOffsets(tps));
            long total = end.values().stream().mapToLong(Long::longValue).sum();
            expectEq("sum of the 3 partitions' end offsets", 1000L, total);
            got = readUntil(c, end, WAIT);
        }
        expectEq("records read from the 3 partitions", 1000, got.size());
        Set<Integer> values = new HashSet<>();
        Map<Integer, Integer> lastValue = new HashMap<>();
        for (ConsumerRecord<byte[], byte[]> r : got) {
            int v = Integer.parseInt(new String(r.value(), StandardCharsets.UTF_8));
            check(values.add(v), "no duplicates", "each value once", "value " + v + " again at partition "
                    + r.partition() + " offset " + r.offset());
            expectBytes("key of value " + v, utf8("key-" + v), r.key());
            RecordMetadata ack = acks.get(v);
            expectEq("partition/offset of key-" + v + " (as acknowledged)", ack.partition() + "/" + ack.offset(),
                    r.partition() + "/" + r.offset());
            Integer prev = lastValue.put(r.partition(), v);
            check(prev == null || prev < v, "values increase within partition " + r.partition(),
                    "after " + prev + " a larger value", v);
        }
        expectEq("distinct values", 1000, values.size());
        // Each key was sent once; it must be read from the partition the producer's partitioner chose.
        ok("read exactly 1000 records, no duplicates, increasing per partition, keys where acknowledged "
                + "(per partition: " + Clients.byPartition(got).entrySet().stream()
                        .collect(Collectors.toMap(Map.Entry::getKey, e -> e.getValue().size())) + ")");
    }

    // ---- consume-offsets -----------------------------------------------------------------------------------------

    private void consumeOffsets() {
        String topic = name("offsets");
        TopicPartition tp = new TopicPartition(topic, 0);
        createTopics(topic, 1);
        List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
        for (int i = 0; i < 100; i++) {
            records.add(new ProducerRecord<>(topic, 0, null, utf8(String.valueOf(i))));
        }
        try (KafkaProducer<byte[], byte[]> p = clients.producer(Map.of())) {
            sendAll(p, records);
        }
        ok("sent 100 records");
        try (Admin admin = clients.admin()) {
            long earliest = await("ListOffsets earliest", admin.listOffsets(Map.of(tp, OffsetSpec.earliest()))
                    .partitionResult(tp)).offset();
            long latest = await("ListOffsets latest", admin.listOffsets(Map.of(tp, OffsetSpec.latest()))
                    .partitionResult(tp)).offset();
            expectEq("Admin.listOffsets(earliest)", 0L, earliest);
            expectEq("Admin.listOffsets(latest)", 100L, latest);
        }
        try (KafkaConsumer<byte[], byte[]> c = clients.plainConsumer()) {
            c.assign(List.of(tp));
            expectEq("KafkaConsumer.beginningOffsets", 0L, c.beginningOffsets(List.of(tp)).get(tp));
            expectEq("KafkaConsumer.endOffsets", 100L, c.endOffsets(List.of(tp)).get(tp));
            ok("earliest offset 0, latest 100 (Admin.listOffsets and KafkaConsumer.beginningOffsets/endOffsets)");
            c.seek(tp, 42);
            List<ConsumerRecord<byte[], byte[]>> got = readUntil(c, Map.of(tp, 100L), WAIT);
            expectOffsets("records read after seek(42)", got, 42, 99);
            for (ConsumerRecord<byte[], byte[]> r : got) {
                expectBytes("value at offset " + r.offset(), utf8(String.valueOf(r.offset())), r.value());
            }
        }
        ok("after seek(42) read offsets 42..99 with values 42..99 and nothing before 42");
    }

    // ---- consume-timestamp ---------------------------------------------------------------------------------------

    private void consumeTimestamp() {
        String topic = name("ts");
        TopicPartition tp = new TopicPartition(topic, 0);
        createTopics(topic, 1);
        long t0 = (System.currentTimeMillis() - 3_600_000L) / 1000 * 1000;
        List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
        for (int i = 0; i < 100; i++) {
            records.add(new ProducerRecord<>(topic, 0, t0 + i * 1000L, null, utf8(String.valueOf(i))));
        }
        try (KafkaProducer<byte[], byte[]> p = clients.producer(Map.of())) {
            List<RecordMetadata> acks = sendAll(p, records);
            for (int i = 0; i < acks.size(); i++) {
                expectEq("acknowledged timestamp of record " + i, t0 + i * 1000L, acks.get(i).timestamp());
            }
        }
        ok("sent 100 records with CreateTime T0 + i*1000, T0 = " + t0);

        // ListOffsets by timestamp through both APIs kafka-clients offers for it.
        try (Admin admin = clients.admin()) {
            Map<Long, Long> want = Map.of(t0 + 50_500L, 51L, t0, 0L, t0 + 200_000L, -1L);
            for (Map.Entry<Long, Long> e : new TreeMap<>(want).entrySet()) {
                long offset = await("ListOffsets for timestamp T0+" + (e.getKey() - t0),
                        admin.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(e.getKey()))).partitionResult(tp))
                        .offset();
                expectEq("Admin.listOffsets(forTimestamp(T0+" + (e.getKey() - t0) + "))", e.getValue(), offset);
            }
        }
        long start;
        try (KafkaConsumer<byte[], byte[]> c = clients.plainConsumer()) {
            c.assign(List.of(tp));
            Map<TopicPartition, OffsetAndTimestamp> found = c.offsetsForTimes(Map.of(tp, t0 + 50_500L));
            OffsetAndTimestamp at = found.get(tp);
            check(at != null, "offsetsForTimes(T0+50500)", "offset 51", "null");
            expectEq("offsetsForTimes(T0+50500).offset", 51L, at.offset());
            expectEq("offsetsForTimes(T0+50500).timestamp", t0 + 51_000L, at.timestamp());
            OffsetAndTimestamp first = c.offsetsForTimes(Map.of(tp, t0)).get(tp);
            check(first != null && first.offset() == 0, "offsetsForTimes(T0)", "offset 0", first);
            OffsetAndTimestamp none = c.offsetsForTimes(Map.of(tp, t0 + 200_000L)).get(tp);
            check(none == null, "offsetsForTimes(T0+200000)", "null (no such record)", none);
            ok("offset for T0+50500 is 51, for T0 is 0, for T0+200000 none (Admin.listOffsets and offsetsForTimes)");
            start = at.offset();
            c.seek(tp, start);
            List<ConsumerRecord<byte[], byte[]>> got = readUntil(c, Map.of(tp, 100L), WAIT);
            expectOffsets("records read from the offset for T0+50500", got, 51, 99);
            for (ConsumerRecord<byte[], byte[]> r : got) {
                expectEq("timestamp at offset " + r.offset(), t0 + r.offset() * 1000L, r.timestamp());
                expectEq("timestamp type at offset " + r.offset(), TimestampType.CREATE_TIME, r.timestampType());
                expectBytes("value at offset " + r.offset(), utf8(String.valueOf(r.offset())), r.value());
            }
        }
        ok("read offsets 51..99 from there, each with its CreateTime");
    }

    // ---- group-rebalance -----------------------------------------------------------------------------------------

    /** Polls one group member (100 ms) and files its records under their key; a key read twice fails. */
    private static int pollInto(KafkaConsumer<byte[], byte[]> c, String who, Map<String, String> seenBy,
            Set<String> allowedKeys) {
        int n = 0;
        for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(100))) {
            String key = new String(r.key(), StandardCharsets.UTF_8);
            String where = who + " at p" + r.partition() + "/" + r.offset();
            check(allowedKeys.contains(key), "records received now", "only keys " + summarize(allowedKeys),
                    "key " + key + " (" + where + ")");
            String before = seenBy.put(key, where);
            check(before == null, "each record received once", "key " + key + " once",
                    "twice: " + before + " and " + where);
            n++;
        }
        return n;
    }

    private static String summarize(Set<String> keys) {
        if (keys.isEmpty()) {
            return "(none)";
        }
        TreeSet<String> s = new TreeSet<>(keys);
        return s.size() + " keys " + s.first() + ".." + s.last();
    }

    /** Every partition the consumer owns has been read to its end offset. */
    private static void expectAtEnd(KafkaConsumer<byte[], byte[]> c, String who) {
        Set<TopicPartition> owned = c.assignment();
        Map<TopicPartition, Long> end = c.endOffsets(owned);
        for (TopicPartition tp : owned) {
            expectEq(who + "'s position on " + tp + " (end offset)", end.get(tp), c.position(tp));
        }
    }

    private static Map<String, String> keysRange(int from, int to) {
        Map<String, String> m = new TreeMap<>();
        for (int i = from; i < to; i++) {
            m.put("k-" + i, String.valueOf(i));
        }
        return m;
    }

    private void produceKeys(String topic, Map<String, String> keyValues) {
        List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
        keyValues.forEach((k, v) -> records.add(new ProducerRecord<>(topic, utf8(k), utf8(v))));
        try (KafkaProducer<byte[], byte[]> p = clients.producer(Map.of())) {
            sendAll(p, records);
        }
    }

    private void groupRebalance() {
        String topic = name("grp");
        String group = name("g");
        createTopics(topic, 4);
        Set<TopicPartition> all = new HashSet<>(partitions(topic, 4));
        Map<String, String> seenBy = new HashMap<>();
        KafkaConsumer<byte[], byte[]> a = clients.groupConsumer(group, "a");
        try (KafkaConsumer<byte[], byte[]> b = clients.groupConsumer(group, "b")) {
            try {
                a.subscribe(List.of(topic));
                b.subscribe(List.of(topic));
                // One thread drives both members: each poll lets that member take part in the rebalance.
                Checks.Deadline joined = new Checks.Deadline(Duration.ofSeconds(40));
                while (true) {
                    pollInto(a, "A", seenBy, Set.of());
                    pollInto(b, "B", seenBy, Set.of());
                    Set<TopicPartition> as = a.assignment();
                    Set<TopicPartition> bs = b.assignment();
                    Set<TopicPartition> union = new HashSet<>(as);
                    union.addAll(bs);
                    boolean disjoint = as.stream().noneMatch(bs::contains);
                    if (disjoint && union.equals(all) && !as.isEmpty() && !bs.isEmpty()) {
                        ok("A owns " + new TreeSet<>(names(as)) + ", B owns " + new TreeSet<>(names(bs)));
                        break;
                    }
                    joined.check("A and B to own disjoint non-empty sets of partitions covering all 4",
                            "A=" + names(as) + " B=" + names(bs));
                }

                Map<String, String> first = keysRange(0, 100);
                produceKeys(topic, first);
                ok("produced 100 records k-0..k-99");
                Checks.Deadline consumed = new Checks.Deadline(WAIT);
                while (seenBy.size() < 100) {
                    pollInto(a, "A", seenBy, first.keySet());
                    pollInto(b, "B", seenBy, first.keySet());
                    consumed.check("A and B to receive the 100 records", seenBy.size() + " received");
                }
                expectAtEnd(a, "A");
                expectAtEnd(b, "B");
                long byA = seenBy.values().stream().filter(w -> w.startsWith("A")).count();
                a.commitSync(WAIT);
                b.commitSync(WAIT);
                ok("A and B together received each of the 100 records once (A " + byA + ", B " + (100 - byA)
                        + ") and committed synchronously");
            } finally {
                a.close(CloseOptions.timeout(WAIT));
            }
            ok("A closed (left the group)");

            // Anything B receives before the next batch would be one of the first 100 again.
            Checks.Deadline rebalanced = new Checks.Deadline(Duration.ofSeconds(45));
            while (!b.assignment().equals(all)) {
                pollInto(b, "B", seenBy, Set.of());
                rebalanced.check("B to own all 4 partitions", "B=" + names(b.assignment()));
            }
            ok("B owns all 4 partitions");

            Map<String, String> second = keysRange(100, 140);
            produceKeys(topic, second);
            Map<String, String> seenByB = new HashMap<>();
            Checks.Deadline consumed = new Checks.Deadline(WAIT);
            while (seenByB.size() < 40) {
                pollInto(b, "B", seenByB, second.keySet());
                consumed.check("B to receive the 40 new records", seenByB.size() + " received");
            }
            expectAtEnd(b, "B");
            ok("B received exactly the 40 new records and none of the first 100 again");
        }
    }

    private static List<String> names(Collection<TopicPartition> tps) {
        return tps.stream().map(tp -> "p" + tp.partition()).sorted().collect(Collectors.toList());
    }

    // ---- offsets-commit-fetch ------------------------------------------------------------------------------------

    /** Polls until the consumer owns exactly `want` (records read meanwhile are returned, not checked). */
    private static List<ConsumerRecord<byte[], byte[]>> awaitAssignment(KafkaConsumer<byte[], byte[]> c,
            Set<TopicPartition> want, String who) {
        List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
        Checks.Deadline deadline = new Checks.Deadline(WAIT);
        while (!c.assignment().equals(want)) {
            c.poll(Duration.ofMillis(100)).forEach(got::add);
            deadline.check(who + " to be assigned " + names(want), names(c.assignment()));
        }
        return got;
    }

    private void offsetsCommitFetch() {
        String topic = name("commit");
        String group = name("g");
        createTopics(topic, 2);
        List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
        for (int p = 0; p < 2; p++) {
            for (int i = 0; i < 10; i++) {
                records.add(new ProducerRecord<>(topic, p, null, utf8("p" + p + "-" + i)));
            }
        }
        try (KafkaProducer<byte[], byte[]> p = clients.producer(Map.of())) {
            sendAll(p, records);
        }
        ok("sent 10 records to each of the 2 partitions");
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        Set<TopicPartition> both = Set.of(p0, p1);

        try (KafkaConsumer<byte[], byte[]> c = clients.groupConsumer(group, "first")) {
            c.subscribe(List.of(topic));
            awaitAssignment(c, both, "the first consumer");
            c.commitSync(Map.of(p0, new OffsetAndMetadata(3, "m0"), p1, new OffsetAndMetadata(7, "m1")), WAIT);
            ok("committed p0=3 (metadata m0), p1=7 (metadata m1) as a group member");
            Map<TopicPartition, OffsetAndMetadata> committed = c.committed(both, WAIT);
            OffsetAndMetadata c0 = committed.get(p0);
            OffsetAndMetadata c1 = committed.get(p1);
            check(c0 != null && c1 != null, "committed() for both partitions", "3/m0 and 7/m1", committed);
            expectEq("committed offset of p0", 3L, c0.offset());
            expectEq("committed metadata of p0", "m0", c0.metadata());
            expectEq("committed offset of p1", 7L, c1.offset());
            expectEq("committed metadata of p1", "m1", c1.metadata());
            ok("committed() (OffsetFetch) returned p0=3/m0, p1=7/m1");
        }

        try (KafkaConsumer<byte[], byte[]> c = clients.groupConsumer(group, "second")) {
            c.subscribe(List.of(topic));
            List<ConsumerRecord<byte[], byte[]>> got = awaitAssignment(c, both, "the second consumer");
            got.addAll(readUntil(c, Map.of(p0, 10L, p1, 10L), WAIT));
            Map<Integer, List<ConsumerRecord<byte[], byte[]>>> parts = Clients.byPartition(got);
            expectOffsets("p0 records read by the new consumer", parts.getOrDefault(0, List.of()), 3, 9);
            expectOffsets("p1 records read by the new consumer", parts.getOrDefault(1, List.of()), 7, 9);
            ok("a new consumer in the group started at p0 offset 3 and p1 offset 7");
        }
    }

    // ---- admin-topics --------------------------------------------------------------------------------------------

    private void adminTopics() {
        String topic = name("adm");
        try (Admin admin = clients.admin()) {
            createTopic(admin, topic, 2, Map.of("retention.ms", "3600000"));
            ok("created " + topic + " with 2 partitions and retention.ms=3600000");
            Set<String> listed = await("listTopics", admin.listTopics().names());
            check(listed.contains(topic), "listTopics", "to contain " + topic, listed);
            expectEq("partitions described", 2, describeTopic(admin, topic).partitions().size());
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config config = await("describeConfigs", admin.describeConfigs(List.of(res)).all()).get(res);
            check(config.get("retention.ms") != null, "describeConfigs", "retention.ms=3600000", config);
            expectEq("retention.ms described", "3600000", config.get("retention.ms").value());
            ok("listed; described with 2 partitions; its config shows retention.ms=3600000");

            Throwable again = awaitFailure("CreateTopics " + topic + " again",
                    admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all());
            check(again instanceof TopicExistsException, "creating it again", "TopicExistsException", again);
            ok("creating it again failed with TOPIC_ALREADY_EXISTS");

            await("createPartitions to 4", admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(4))).all());
            Checks.waitFor("describeTopics to show 4 partitions", WAIT,
                    () -> describeTopic(admin, topic).partitions().size() == 4);
            ok("added partitions: described with 4");

            await("deleteTopics", admin.deleteTopics(List.of(topic)).all());
            Checks.waitFor(topic + " to be gone from listTopics", WAIT,
                    () -> !admin.listTopics().names().get().contains(topic));
            Checks.waitFor("describeTopics " + topic + " to fail with UNKNOWN_TOPIC_OR_PARTITION", WAIT, () -> {
                Throwable e = awaitFailure("describeTopics " + topic,
                        admin.describeTopics(List.of(topic)).allTopicNames());
                return e instanceof UnknownTopicOrPartitionException ? Boolean.TRUE : e.toString();
            });
            ok("deleted: no longer listed, metadata answers UNKNOWN_TOPIC_OR_PARTITION");
        }
    }

    // ---- admin-groups --------------------------------------------------------------------------------------------

    private static GroupListing listed(Admin admin, String group) {
        Collection<GroupListing> all = await("listGroups", admin.listGroups().all());
        return all.stream().filter(g -> g.groupId().equals(group)).findFirst().orElse(null);
    }

    private static ConsumerGroupDescription describeGroup(Admin admin, String group) {
        return await("describeConsumerGroups " + group, admin.describeConsumerGroups(List.of(group)).all())
                .get(group);
    }

    private void adminGroups() {
        String topic = name("ag");
        String group = name("g");
        createTopics(topic, 2);
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        try (KafkaProducer<byte[], byte[]> p = clients.producer(Map.of())) {
            sendAll(p, List.of(new ProducerRecord<>(topic, 0, null, utf8("r0")),
                    new ProducerRecord<>(topic, 1, null, utf8("r1"))));
        }
        ok("sent 1 record to each partition");
        try (Admin admin = clients.admin()) {
            try (KafkaConsumer<byte[], byte[]> c = clients.groupConsumer(group, "member")) {
                c.subscribe(List.of(topic));
                List<ConsumerRecord<byte[], byte[]>> got = awaitAssignment(c, Set.of(p0, p1), "the consumer");
                got.addAll(readUntil(c, Map.of(p0, 1L, p1, 1L), WAIT));
                expectEq("records read", 2, got.size());
                c.commitSync(WAIT);
                ok("the consumer owns both partitions, read 2 records and committed");

                GroupListing listing = listed(admin, group);
                check(listing != null, "listGroups", "to contain " + group, "not listed");
                expectEq("listGroups protocol type of " + group, "consumer", listing.protocol());
                ok("listGroups contains " + group + " (protocol type consumer, type " + listing.type().orElse(null)
                        + ")");
                if (opts.groupProtocol.equals("classic")) {
                    // DescribeGroups as such: the protocol type is only exposed by the classic-group description.
                    ClassicGroupDescription classic = await("describeClassicGroups",
                            admin.describeClassicGroups(List.of(group)).all()).get(group);
                    expectEq("describeClassicGroups protocol type", "consumer", classic.protocol());
                }
                ConsumerGroupDescription d = describeGroup(admin, group);
                expectEq("group state", GroupState.STABLE, d.groupState());
                expectEq("members described", 1, d.members().size());
                MemberDescription m = d.members().iterator().next();
                expectEq("the member's assignment", Set.of(p0, p1), m.assignment().topicPartitions());
                ok("described: Stable, one member assigned both partitions (assignor " + d.partitionAssignor()
                        + ")");

                Map<TopicPartition, OffsetAndMetadata> offsets = await("listConsumerGroupOffsets",
                        admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
                Map<TopicPartition, Long> plain = new HashMap<>();
                offsets.forEach((tp, om) -> plain.put(tp, om == null ? null : om.offset()));
                expectEq("group offsets listed by the admin API", Map.of(p0, 1L, p1, 1L), plain);
                ok("admin lists group offsets p0=1, p1=1");
            }
            ok("the consumer closed");
            Checks.waitFor("the group to be described Empty", WAIT, () -> {
                ConsumerGroupDescription d = describeGroup(admin, group);
                return d.groupState() == GroupState.EMPTY && d.members().isEmpty() ? Boolean.TRUE : d;
            });
            ok("described: Empty");
            await("deleteConsumerGroups", admin.deleteConsumerGroups(List.of(group)).all());
            Checks.waitFor(group + " to be gone from listGroups", WAIT, () -> listed(admin, group) == null);
            ok("deleted: no longer listed");
        }
    }

    // ---- regex-subscribe (not a matrix column) ----------------------------------------------------------------------

    /**
     * A pattern subscription: the member reads the matching topic, not the other one, and picks up a matching topic
     * created after it joined. With brokerSide=false it is subscribe(java.util.regex.Pattern), which the client
     * resolves against metadata (refreshed every second here) under either group protocol; with brokerSide=true it is
     * subscribe(SubscriptionPattern), a KIP-848 regex the broker resolves (group.protocol=consumer only).
     */
    private void regexSubscribe(boolean brokerSide) {
        String a = name("rx-a");
        String b = name("rx-b");
        String other = name("other");
        createTopics(a, 1);
        createTopics(other, 1);
        produceKeys(a, Map.of("ka", "va"));
        produceKeys(other, Map.of("ko", "vo"));
        Map<String, String> extra = Map.of("metadata.max.age.ms", "1000");
        try (KafkaConsumer<byte[], byte[]> c = clients.groupConsumer(name("g"), "regex", extra)) {
            if (brokerSide) {
                // Topic names here are [a-z0-9-]: no RE2 metacharacters to quote.
                c.subscribe(new org.apache.kafka.clients.consumer.SubscriptionPattern(opts.prefix + "-rx-.*"));
            } else {
                c.subscribe(java.util.regex.Pattern.compile(java.util.regex.Pattern.quote(opts.prefix) + "-rx-.*"));
            }
            Map<String, String> seen = new TreeMap<>(); // value -> topic
            Checks.Deadline first = new Checks.Deadline(WAIT);
            while (!seen.containsKey("va")) {
                c.poll(Duration.ofMillis(200)).forEach(r -> seen.put(new String(r.value(), StandardCharsets.UTF_8), r.topic()));
                first.check("the record of " + a, seen);
            }
            ok("read " + a + " through the pattern");
            createTopics(b, 1);
            produceKeys(b, Map.of("kb", "vb"));
            // The broker re-resolves regexes lazily (Kafka: at most every 10 s, on a heartbeat): give it longer.
            Checks.Deadline later = new Checks.Deadline(Duration.ofSeconds(45));
            while (!seen.containsKey("vb")) {
                c.poll(Duration.ofMillis(200)).forEach(r -> seen.put(new String(r.value(), StandardCharsets.UTF_8), r.topic()));
                later.check("the record of " + b + ", created after the subscription", seen);
            }
            expectEq("records read through the pattern", Map.of("va", a, "vb", b), seen);
            ok("picked up " + b + " created after joining; never read " + other);
        }
    }
}
