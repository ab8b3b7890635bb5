package spool.interop;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;

/**
 * --scenario group-member: one member of group PREFIX-g on topic PREFIX-shared, for mixed groups where the other
 * members are other clients. Prints "PARTITION OFFSET VALUE" per record (flushed at once, so a driver can follow),
 * after each poll commits synchronously exactly the records it printed, and closes after --count records (records
 * of the last poll beyond the count are neither printed nor committed, so the group hands them to another member).
 * See Peer.java for the flags.
 */
final class GroupMember {
    private final Peer.Options opts;

    GroupMember(Peer.Options opts) {
        this.opts = opts;
    }

    void run() {
        String topic = opts.prefix + "-shared";
        String group = opts.prefix + "-g";
        Clients clients = new Clients(opts);
        int read = 0;
        Checks.Deadline deadline = new Checks.Deadline(Duration.ofSeconds(opts.timeoutSeconds));
        try (KafkaConsumer<byte[], byte[]> c = clients.groupConsumer(group, "member")) {
            c.subscribe(List.of(topic));
            while (read < opts.count) {
                ConsumerRecords<byte[], byte[]> records = c.poll(Duration.ofMillis(200));
                StringBuilder out = new StringBuilder();
                Map<TopicPartition, OffsetAndMetadata> printed = new HashMap<>();
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    if (read == opts.count) {
                        break; // the rest of this poll stays uncommitted: another member will read it
                    }
                    String value = r.value() == null ? "null" : new String(r.value(), StandardCharsets.UTF_8);
                    out.append(r.partition()).append(' ').append(r.offset()).append(' ').append(value).append('\n');
                    printed.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    read++;
                }
                if (!printed.isEmpty()) {
                    System.out.print(out);
                    System.out.flush();
                    c.commitSync(printed, Checks.WAIT);
                }
                deadline.check(opts.count + " records from " + topic + " in group " + group, read + " read");
            }
        }
        System.err.println("group-member: read " + read + " records, committed, left group " + group);
    }
}
