package spool.interop;

import static spool.interop.Checks.WAIT;
import static spool.interop.Checks.await;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/** Factories for kafka-clients objects configured alike for every scenario, and shared client routines. */
final class Clients {
    private final Peer.Options opts;

    Clients(Peer.Options opts) {
        this.opts = opts;
    }

    private Properties common(String role) {
        Properties p = new Properties();
        p.put("bootstrap.servers", opts.bootstrap);
        p.put("client.id", "spool-interop-java-" + opts.scenario + "-" + role);
        p.put("request.timeout.ms", "15000");
        return p;
    }

    Admin admin() {
        Properties p = common("admin");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, String.valueOf(WAIT.toMillis()));
        return Admin.create(p);
    }

    /** A byte[] producer with acks=all; extra settings (compression, idempotence) on top. */
    KafkaProducer<byte[], byte[]> producer(Map<String, String> extra) {
        Properties p = common("producer");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, String.valueOf(WAIT.toMillis()));
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, String.valueOf(WAIT.toMillis()));
        p.putAll(extra);
        return new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
    }

    /** A consumer without a group, for assign() + seek(). */
    KafkaConsumer<byte[], byte[]> plainConsumer() {
        return consumer(null, "plain");
    }

    /**
     * A member of group `group` using the --group-protocol of this run, auto commit off, and earliest as reset policy
     * (every topic here is fresh, so "earliest" means "every record produced by this scenario").
     */
    KafkaConsumer<byte[], byte[]> groupConsumer(String group, String role) {
        return consumer(group, role, Map.of());
    }

    /** Like groupConsumer, with extra consumer properties. */
    KafkaConsumer<byte[], byte[]> groupConsumer(String group, String role, Map<String, String> extra) {
        return consumer(group, role, extra);
    }

    private KafkaConsumer<byte[], byte[]> consumer(String group, String role) {
        return consumer(group, role, Map.of());
    }

    private KafkaConsumer<byte[], byte[]> consumer(String group, String role, Map<String, String> extra) {
        Properties p = common("consumer-" + role);
        p.putAll(extra);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, String.valueOf(WAIT.toMillis()));
        if (group != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, opts.groupProtocol);
            if (opts.groupProtocol.equals("classic")) {
                // The default (3 s) makes every rebalance notice take up to 3 s; the broker-driven consumer protocol
                // takes its heartbeat interval from the broker and rejects this setting.
                p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
                if (opts.assignor != null) {
                    p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignorClass(opts.assignor));
                }
            }
        }
        return new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    /** The class behind an assignor's protocol name (the name other clients use for it in JoinGroup). */
    private static String assignorClass(String name) {
        return switch (name) {
            case "range" -> "org.apache.kafka.clients.consumer.RangeAssignor";
            case "roundrobin" -> "org.apache.kafka.clients.consumer.RoundRobinAssignor";
            case "sticky" -> "org.apache.kafka.clients.consumer.StickyAssignor";
            case "cooperative-sticky" -> "org.apache.kafka.clients.consumer.CooperativeStickyAssignor";
            default -> throw new IllegalArgumentException("unknown assignor " + name);
        };
    }

    /** Creates a topic with replication factor 1 through the admin API and waits until metadata shows it led. */
    static void createTopic(Admin admin, String name, int partitions, Map<String, String> configs) {
        NewTopic topic = new NewTopic(name, partitions, (short) 1).configs(configs);
        await("CreateTopics " + name, admin.createTopics(List.of(topic)).all());
        waitForTopic(admin, name, partitions);
    }

    static TopicDescription describeTopic(Admin admin, String name) {
        return await("describeTopics " + name, admin.describeTopics(List.of(name)).allTopicNames()).get(name);
    }

    static void waitForTopic(Admin admin, String name, int partitions) {
        Checks.waitFor("metadata to show topic " + name + " with " + partitions + " led partitions", WAIT, () -> {
            TopicDescription d = admin.describeTopics(List.of(name)).allTopicNames().get().get(name);
            boolean led = d.partitions().size() == partitions
                    && d.partitions().stream().allMatch(p -> p.leader() != null && p.leader().id() >= 0);
            return led ? Boolean.TRUE : d;
        });
    }

    static List<TopicPartition> partitions(String topic, int count) {
        List<TopicPartition> out = new ArrayList<>();
        for (int p = 0; p < count; p++) {
            out.add(new TopicPartition(topic, p));
        }
        return out;
    }

    /**
     * Polls an assigned consumer until its position reached `end` on every partition of `end`, returning every record
     * read in order. Fails at the deadline with how far it got.
     */
    static List<ConsumerRecord<byte[], byte[]>> readUntil(KafkaConsumer<byte[], byte[]> consumer,
            Map<TopicPartition, Long> end, Duration limit) {
        List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
        Checks.Deadline deadline = new Checks.Deadline(limit);
        while (true) {
            for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                got.add(r);
            }
            Map<TopicPartition, Long> positions = new HashMap<>();
            for (TopicPartition tp : end.keySet()) {
                positions.put(tp, consumer.position(tp));
            }
            if (end.entrySet().stream().allMatch(e -> positions.get(e.getKey()) >= e.getValue())) {
                return got;
            }
            deadline.check("the consumer to reach end offsets " + end, "positions " + positions + " after "
                    + got.size() + " records");
        }
    }

    static Map<Integer, List<ConsumerRecord<byte[], byte[]>>> byPartition(
            Collection<ConsumerRecord<byte[], byte[]>> records) {
        return records.stream().collect(Collectors.groupingBy(ConsumerRecord::partition));
    }
}
