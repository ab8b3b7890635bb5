/*
 * The interop suite's Java peer: Apache Kafka's own client library (kafka-clients, KafkaProducer /
 * KafkaConsumer / Admin) driven through the scenarios of interop/SCENARIOS.md.
 *
 * Command line (run with java -cp 'CLASSES:KAFKA_LIBS/*' spool.interop.Peer ...):
 *
 *   --bootstrap HOST:PORT   broker to talk to (required except with --version)
 *   --scenario NAME         one of the nine scenarios of interop/SCENARIOS.md, or group-member (below)
 *   --prefix PREFIX         every topic and group this run creates is named PREFIX-...
 *   --group-protocol P      classic (default) or consumer: the consumer group protocol of every group consumer,
 *                           i.e. kafka-clients' group.protocol (consumer = KIP-848, ConsumerGroupHeartbeat)
 *   --version               print the kafka-clients version (AppInfoParser.getVersion()) and exit
 *
 * Scenario group-member (a building block for mixed groups, not a matrix scenario): joins group PREFIX-g,
 * subscribes to topic PREFIX-shared (which must exist; partitions without a committed offset are read from the
 * earliest offset), prints one line per record on stdout,
 *     PARTITION OFFSET VALUE        (VALUE decoded as UTF-8, "null" for a null value)
 * after every poll that returned records commits synchronously the offsets of exactly the records it printed, and
 * closes (leaving the group) once it has printed --count records (records of the last poll beyond the count are
 * neither printed nor committed, so the group hands them to another member).
 *   --count N               how many records to read (required for group-member)
 *   --timeout-seconds S     give up (exit 1) if N records were not read within S seconds (default 80)
 *   --assignor NAME         classic protocol only: range, roundrobin, sticky or cooperative-sticky (Java's
 *                           partition.assignment.strategy; default: the client's [range, cooperative-sticky])
 *
 * Its stdout carries nothing else; progress and errors go to stderr.
 *
 * Exit status: 0 when every check held; 1 with "FAILED: ..." (expected vs seen) on stderr otherwise; 2 for a bad
 * command line; 3 when the run exceeded its overall deadline. Progress ("ok: ...") goes to stdout.
 */
package spool.interop;

import java.time.Duration;
import java.util.Locale;

import org.apache.kafka.common.utils.AppInfoParser;

public final class Peer {
    /** Every scenario finishes within 90 s per the contract; this is the last-resort limit for a hung client. */
    static final Duration RUN_DEADLINE = Duration.ofSeconds(85);

    private Peer() {}

    /** The parsed command line. */
    static final class Options {
        String bootstrap;
        String scenario;
        String prefix;
        String groupProtocol = "classic";
        int count = -1;
        int timeoutSeconds = 80;
        /** Java name of the one assignor to use, or null for the client's default list. */
        String assignor;
    }

    public static void main(String[] args) {
        Options opts;
        try {
            opts = parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("usage error: " + e.getMessage());
            System.exit(2);
            return;
        }
        if (opts == null) { // --version
            System.out.println(AppInfoParser.getVersion());
            return;
        }
        boolean member = opts.scenario.equals("group-member");
        startWatchdog(opts.scenario, member ? Duration.ofSeconds(opts.timeoutSeconds + 5L) : RUN_DEADLINE);
        int status;
        try {
            if (member) {
                new GroupMember(opts).run();
            } else {
                new Scenarios(opts).run(opts.scenario);
            }
            // group-member's stdout carries only record lines, for the driver to parse.
            (member ? System.err : System.out).println("ok: scenario " + opts.scenario + " (kafka-clients " + AppInfoParser.getVersion()
                    + ", group.protocol=" + opts.groupProtocol + ")");
            status = 0;
        } catch (Checks.CheckFailed e) {
            System.err.println("FAILED: " + opts.scenario + ": " + e.getMessage());
            status = 1;
        } catch (Exception e) {
            System.err.println("FAILED: " + opts.scenario + ": unexpected " + e);
            e.printStackTrace(System.err);
            status = 1;
        }
        System.out.flush();
        // Kafka clients leave non-daemon threads behind only when something failed to close; do not wait for them.
        System.exit(status);
    }

    /** Returns null for --version. */
    static Options parse(String[] args) {
        Options o = new Options();
        for (int i = 0; i < args.length; i++) {
            String flag = args[i];
            if (flag.equals("--version")) {
                return null;
            }
            if (i + 1 >= args.length) {
                throw new IllegalArgumentException(flag + " needs a value");
            }
            String value = args[++i];
            switch (flag) {
                case "--bootstrap" -> o.bootstrap = value;
                case "--scenario" -> o.scenario = value;
                case "--prefix" -> o.prefix = value;
                case "--group-protocol" -> o.groupProtocol = value.toLowerCase(Locale.ROOT);
                case "--count" -> o.count = Integer.parseInt(value);
                case "--timeout-seconds" -> o.timeoutSeconds = Integer.parseInt(value);
                case "--assignor" -> o.assignor = value;
                default -> throw new IllegalArgumentException("unknown flag " + flag);
            }
        }
        if (o.bootstrap == null || o.scenario == null || o.prefix == null) {
            throw new IllegalArgumentException("--bootstrap, --scenario and --prefix are required");
        }
        if (!o.groupProtocol.equals("classic") && !o.groupProtocol.equals("consumer")) {
            throw new IllegalArgumentException("--group-protocol must be classic or consumer, not " + o.groupProtocol);
        }
        if (o.scenario.equals("group-member") && o.count < 0) {
            throw new IllegalArgumentException("--scenario group-member needs --count N");
        }
        if (!o.scenario.equals("group-member") && !Scenarios.NAMES.contains(o.scenario)
                && !Scenarios.EXTRAS.contains(o.scenario)) {
            throw new IllegalArgumentException("unknown scenario " + o.scenario + "; known: " + Scenarios.NAMES
                    + ", " + Scenarios.EXTRAS + " and group-member");
        }
        return o;
    }

    /** A hung client call (one without its own timeout) must not outlive the contract's 90 s. */
    private static void startWatchdog(String scenario, Duration limit) {
        Thread t = new Thread(() -> {
            try {
                Thread.sleep(limit.toMillis());
            } catch (InterruptedException e) {
                return;
            }
            System.err.println("FAILED: " + scenario + ": did not finish within " + limit.toSeconds() + " s");
            System.err.flush();
            Runtime.getRuntime().halt(3);
        }, "peer-watchdog");
        t.setDaemon(true);
        t.start();
    }
}
