#!/usr/bin/env bash
# Spool vs Apache Kafka 4.3.1 on this machine, in one run; writes BENCHMARKS.md.
#
#   bench/compare.sh                      # full run (~15 min on 2 cores)
#   SCALE=20 E2E_SECS=3 OUT=/tmp/b.md bench/compare.sh   # smoke test: 1/20 of the records
#   WARMUP=0 bench/compare.sh             # no unmeasured warm-up round (cold JVM in the first run)
#   REPEAT=5 bench/compare.sh             # throughput runs (a)-(c) 5 times each (default 3; median)
#   START_REPEAT=1 bench/compare.sh       # time one start per broker (default 5; median)
#
# For each broker (Spool first, then Kafka, never both at once) it measures start-to-first-ack
# and idle RSS, then runs every workload with every client that fits (spool bench, Kafka's
# ProducerPerformance/ConsumerPerformance, kcat/librdkafka), sampling the broker's RSS (peak)
# and CPU time (utime+stime) around each client run, and the client's own CPU time. Needs:
# target/release/spool (cargo build --release -p spool-cli), java 17+, the Kafka 4.3.1 jars
# (KAFKA_LIBS), kcat, python3.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SPOOL=${SPOOL:-$REPO/target/release/spool}
if [[ -z ${KAFKA_LIBS:-} ]]; then
    KAFKA_LIBS=$REPO/.peers/kafka-ref/libs
    [[ -d $KAFKA_LIBS ]] || KAFKA_LIBS=/work/main/.peers/kafka-ref/libs
fi
SCALE=${SCALE:-1}          # divide record counts by this (smoke tests)
E2E_SECS=${E2E_SECS:-20}   # duration of the constant-rate latency runs
RATE=${RATE:-10000}        # their rate, records/s
REPEAT=${REPEAT:-3}        # runs of each throughput workload per client and broker (median reported)
LAT_REPEAT=${LAT_REPEAT:-3} # runs of each latency workload (d) per client and broker (median of each percentile)
START_REPEAT=${START_REPEAT:-5} # timed starts per broker, each from a fresh data directory (median reported)
OUT=${OUT:-$REPO/BENCHMARKS.md}
WORK=$(mktemp -d /tmp/spool-compare.XXXXXX)
mkfifo "$WORK/nap" # measure's sampler naps reading it
RESULTS=$WORK/results.jsonl
N_SMALL=$((3000000 / SCALE))   # (a) and (c): 100-byte records (~1 s per run with spool bench)
N_BIG=$((200000 / SCALE))      # (b): 1 KiB records, acks=all
CLK_TCK=$(getconf CLK_TCK)
CMDLINE="$0 $*"
[[ $SCALE != 1 || $E2E_SECS != 20 || $RATE != 10000 || ${WARMUP:-1} != 1 || $REPEAT != 3 || $LAT_REPEAT != 3 || $START_REPEAT != 5 ]] &&
    CMDLINE="SCALE=$SCALE E2E_SECS=$E2E_SECS RATE=$RATE WARMUP=${WARMUP:-1} REPEAT=$REPEAT LAT_REPEAT=$LAT_REPEAT START_REPEAT=$START_REPEAT $CMDLINE"

# Kafka's own JVM settings: bin/kafka-server-start.sh sets KAFKA_HEAP_OPTS="-Xmx1G -Xms1G" and
# bin/kafka-run-class.sh adds these performance options (and -Xmx256M for the tools).
JVM_PERF=(-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
          -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true)
KAFKA_BROKER_JAVA=(java -Xmx1G -Xms1G "${JVM_PERF[@]}" -cp "$KAFKA_LIBS/*")
KAFKA_TOOL_JAVA=(java -Xmx256M "${JVM_PERF[@]}" -cp "$KAFKA_LIBS/*")

BPID=""
log() { echo "[compare $(date +%T)] $*" >&2; }
now() { date +%s.%N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat" 2>/dev/null || echo 0; }

stop_broker() {
    [[ -n $BPID ]] || return 0
    kill -TERM "$BPID" 2>/dev/null
    for _ in $(seq 1 300); do kill -0 "$BPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$BPID" 2>/dev/null
    wait "$BPID" 2>/dev/null
    BPID=""
}
# Each run writes ~10 GB per broker: a broker's data goes once its workloads are measured, and
# whatever is left (input files, kcat's output) at exit; KEEP=1 keeps everything for a look.
drop_data() { [[ ${KEEP:-0} == 1 ]] || rm -rf "$@"; }
trap 'stop_broker; drop_data "$WORK"/spool-data "$WORK"/kafka/logs "$WORK"/rec*.txt "$WORK"/*.kcat.*.out' EXIT
trap 'exit 130' INT TERM

record() { # record KEY=VALUE... -> one JSON line in $RESULTS (values are numbers or strings)
    python3 -c '
import json, sys
d = {}
for kv in sys.argv[1:]:
    k, v = kv.split("=", 1)
    try: d[k] = float(v) if "." in v or "e" in v.lower() else int(v)
    except ValueError: d[k] = v
print(json.dumps(d))' "$@" >> "$RESULTS"
}

# measure BROKER WORKLOAD CLIENT KIND CMD...: runs CMD, its stdout in a file; records wall time,
# broker CPU seconds, the client's own CPU seconds and peak broker RSS (sampled every 0.1 s)
# while it ran.
measure() {
    local broker=$1 wl=$2 client=$3 kind=$4; shift 4
    local out=$WORK/$broker.$wl.$client.r${REP:-1}.out peak=$WORK/peak
    echo 0 > "$peak"
    # The sampler starts no process per sample: `$(awk ...)` and `sleep 0.1` were three forks
    # and execs every 0.1 s, each taking a CPU for a while on this 2-core machine, and the
    # latency runs (d) measured them as delays. Bash builtins read /proc and nap (a read with
    # a timeout on a FIFO nobody writes); the peak is written once, when the sampler is told
    # to stop.
    ( p=0
      trap 'echo "$p" > "$peak"; exit 0' TERM
      exec {nap}<> "$WORK/nap"
      while kill -0 "$BPID" 2>/dev/null; do
          while read -r k v _; do
              if [[ $k == VmRSS: ]]; then (( v > p )) && p=$v; break; fi
          done < "/proc/$BPID/status"
          read -r -t 0.1 -u "$nap" _ || true
      done
      echo "$p" > "$peak" ) &
    local sampler=$!
    local c0 t0 t1 c1 rc
    c0=$(cpu_ticks "$BPID"); t0=$(now)
    # In a subshell that, once CMD (a program or a function starting one) has been waited for,
    # reads its own children's CPU time: the client's, whatever processes it ran.
    ( "$@" > "$out" 2> "$out.err"; rc=$?
      awk '{sub(/^.*\) /, ""); print $14 + $15}' "/proc/$BASHPID/stat" > "$out.cpu"; exit $rc ); rc=$?
    t1=$(now); c1=$(cpu_ticks "$BPID")
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
    local wall cpu peak_kb
    wall=$(python3 -c "print(round($t1 - $t0, 3))")
    cpu=$(python3 -c "print(round(($c1 - $c0) / $CLK_TCK, 2))")
    local client_cpu
    client_cpu=$(awk -v hz="$CLK_TCK" '{v = $1 / hz} END {printf "%.2f", v}' "$out.cpu" 2>/dev/null)
    peak_kb=$(cat "$peak" 2>/dev/null); [[ $peak_kb =~ ^[0-9]+$ ]] || peak_kb=0
    log "$broker $wl $client: rc=$rc wall=${wall}s broker_cpu=${cpu}s client_cpu=${client_cpu}s peak_rss=$(( peak_kb / 1024 ))MB"
    (( rc == 0 )) || { log "  stderr tail:"; tail -5 "$out.err" >&2; }
    record broker="$broker" workload="$wl" client="$client" kind="$kind" rc="$rc" wall_s="$wall" \
        cpu_s="$cpu" client_cpu_s="$client_cpu" peak_rss_kb="$peak_kb" out="$out" rep="${REP:-1}"
}

# wait_first_ack BROKER T0: loops a one-record `spool produce` until the broker acknowledges it.
wait_first_ack() {
    local broker=$1 t0=$2 addr=$3
    local deadline=$(( $(date +%s) + 180 ))
    # Retried after 5 ms, doubling to 50 ms: fine-grained for a fast start, without a flood of
    # probe processes competing with a slow one for the CPU.
    local pause_ms=5
    until echo probe | timeout 10 "$SPOOL" produce startup-probe -b "$addr" > /dev/null 2>> "$WORK/$broker.probe.err"; do
        kill -0 "$BPID" 2>/dev/null || { log "$broker exited during start-up"; return 1; }
        (( $(date +%s) < deadline )) || { log "$broker: no ack after 180 s"; return 1; }
        sleep "$(printf '0.%03d' "$pause_ms")"
        pause_ms=$(( pause_ms * 2 > 50 ? 50 : pause_ms * 2 ))
    done
    local t1; t1=$(now)
    record broker="$broker" workload=startup client=- kind=startup \
        first_ack_s="$(python3 -c "print(round($t1 - $t0, 3))")"
    sleep 2 # let start-up work settle before reading the idle RSS
    record broker="$broker" workload=idle client=- kind=idle rss_kb="$(rss_kb "$BPID")" \
        cpu_s="$(python3 -c "print(round($(cpu_ticks "$BPID") / $CLK_TCK, 2))")"
}

start_spool() {
    local port; port=$(free_port); ADDR=127.0.0.1:$port
    mkdir -p "$WORK/spool-data"
    local t0; t0=$(now)
    "$SPOOL" broker --listen "$ADDR" --data-dir "$WORK/spool-data" > "$WORK/spool.log" 2>&1 &
    BPID=$!
    wait_first_ack spool "$t0" "$ADDR"
}

start_kafka() {
    local port cport; port=$(free_port); cport=$(free_port); ADDR=127.0.0.1:$port
    local dir=$WORK/kafka; mkdir -p "$dir"
    # Only what a single KRaft node needs; everything else is Kafka's default.
    cat > "$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/logs
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
EOF
    local cluster f0 f1
    # Never starting with '-' (the storage tool would take it for an option), as Kafka's own ids.
    cluster=$(python3 -c '
import base64, uuid
c = "-"
while c.startswith("-"):
    c = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
print(c)')
    f0=$(now)
    "${KAFKA_TOOL_JAVA[@]}" kafka.tools.StorageTool format -t "$cluster" -c "$dir/server.properties" --standalone \
        > "$WORK/kafka-format.log" 2>&1 || { log "kafka format failed"; cat "$WORK/kafka-format.log" >&2; return 1; }
    f1=$(now)
    record broker=kafka workload=format client=- kind=format wall_s="$(python3 -c "print(round($f1 - $f0, 3))")"
    local t0; t0=$(now)
    "${KAFKA_BROKER_JAVA[@]}" kafka.Kafka "$dir/server.properties" > "$WORK/kafka.log" 2>&1 &
    BPID=$!
    wait_first_ack kafka "$t0" "$ADDR"
}

# The produce topics of one repetition, named <workload>-<client>-r<rep>.
produce_topics() {
    local rep c
    for ((rep = 1; rep <= REPEAT; rep++)); do
        for c in spool spool1m java kcat; do echo "p1-$c-r$rep:1 p6-$c-r$rep:6 all-$c-r$rep:1"; done
    done
}

# The latency topics, one per repetition.
latency_topics() {
    local rep
    for ((rep = 1; rep <= LAT_REPEAT; rep++)); do
        echo "lat-spool-r$rep:1 lat-java-r$rep:1 e2e-spool-r$rep:1 e2e0-spool-r$rep:1"
    done
}

create_topics() {
    local t parts
    for t in $(latency_topics) $(produce_topics); do
        parts=${t#*:}; t=${t%:*}
        "$SPOOL" topics create "$t" --partitions "$parts" -b "$ADDR" > /dev/null 2>> "$WORK/topics.err" ||
            log "create $t failed"
    done
    sleep 1
}

prodperf() { # prodperf TOPIC N SIZE THROUGHPUT ACKS
    "${KAFKA_TOOL_JAVA[@]}" org.apache.kafka.tools.ProducerPerformance --topic "$1" --num-records "$2" \
        --record-size "$3" --throughput "$4" --producer-props bootstrap.servers="$ADDR" acks="$5"
}

run_workloads() {
    local b=$1
    create_topics
    # Warm-up, not measured, the same for both brokers: mostly so that Kafka's JIT has compiled
    # its produce/fetch paths before the first measured run (Spool has nothing to warm up but
    # gets the same treatment).
    if [[ ${WARMUP:-1} == 1 ]]; then
        log "$b warm-up"
        "$SPOOL" bench produce --topic warmup --partitions 1 --record-size 100 --num-records $((N_SMALL / 2)) \
            --acks 1 -b "$ADDR" > /dev/null 2>&1
        prodperf warmup $((N_SMALL / 2)) 100 -1 1 > /dev/null 2>&1
        "$SPOOL" bench consume --topic warmup -b "$ADDR" > /dev/null 2>&1
        sleep 1
    fi
    # (a)-(c), REPEAT times each; within a repetition the clients take turns, so slow drift in
    # the machine or the JVM touches every client alike.
    for ((REP = 1; REP <= REPEAT; REP++)); do
        local r=r$REP
        # (a) N_SMALL x 100 B, acks=1, 1 partition and 6 partitions
        for p in 1 6; do
            measure "$b" "p$p" spool-bench spool "$SPOOL" bench produce --topic "p$p-spool-$r" \
                --record-size 100 --num-records "$N_SMALL" --acks 1 --json -b "$ADDR"
            # The same client with librdkafka's batch size: client speed like for like with kcat.
            measure "$b" "p$p" spool-bench-1m spool "$SPOOL" bench produce --topic "p$p-spool1m-$r" \
                --record-size 100 --num-records "$N_SMALL" --acks 1 --batch-size 1000000 --json -b "$ADDR"
            measure "$b" "p$p" java-perf java-produce prodperf "p$p-java-$r" "$N_SMALL" 100 -1 1
            measure "$b" "p$p" kcat kcat-produce kcat -P -q -b "$ADDR" -t "p$p-kcat-$r" -X acks=1 \
                -l "$WORK/rec100.txt"
        done
        # (b) 200,000 x 1 KiB, acks=all (idempotent producer in all three clients)
        measure "$b" all spool-bench spool "$SPOOL" bench produce --topic "all-spool-$r" \
            --record-size 1024 --num-records "$N_BIG" --acks all --json -b "$ADDR"
        measure "$b" all spool-bench-1m spool "$SPOOL" bench produce --topic "all-spool1m-$r" \
            --record-size 1024 --num-records "$N_BIG" --acks all --batch-size 1000000 --json -b "$ADDR"
        measure "$b" all java-perf java-produce prodperf "all-java-$r" "$N_BIG" 1024 -1 all
        measure "$b" all kcat kcat-produce kcat -P -q -b "$ADDR" -t "all-kcat-$r" -X acks=all \
            -X enable.idempotence=true -l "$WORK/rec1k.txt"
        # (c) consume the 1-partition topic of (a) that ProducerPerformance wrote in this
        # repetition: the Java client's batches are 16 KiB whatever the broker, so both brokers
        # serve the same batches (spool bench's batches grow while acknowledgements wait, which
        # makes its topics' layout depend on the broker's speed).
        measure "$b" consume spool-bench spool "$SPOOL" bench consume --topic "p1-java-$r" \
            --num-records "$N_SMALL" --json -b "$ADDR"
        measure "$b" consume java-perf java-consume "${KAFKA_TOOL_JAVA[@]}" \
            org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$ADDR" --topic "p1-java-$r" \
            --num-records "$N_SMALL" --timeout 30000
        measure "$b" consume kcat kcat-consume kcat -C -q -b "$ADDR" -t "p1-java-$r" -o beginning -e \
            -c "$N_SMALL" -f '%s\n'
    done
    # (d) latency at a constant rate: producer ack latency (spool bench, ProducerPerformance) and
    # end-to-end produce->consume latency (spool bench e2e), 100 B records, acks=all; LAT_REPEAT
    # times each (the report takes the median of each percentile). Each run starts after
    # `sync`, for both brokers: (a)-(c) leave gigabytes in the page cache, and when the kernel
    # writes them back during a run, an fsync issued meanwhile (Spool's acks=all) waits for that
    # writeback on ext4 -- which measures the previous workloads, not this one.
    for ((REP = 1; REP <= LAT_REPEAT; REP++)); do
        local r=r$REP
        sync
        measure "$b" lat spool-bench spool "$SPOOL" bench produce --topic "lat-spool-$r" \
            --record-size 100 --duration "$E2E_SECS" --throughput "$RATE" --acks all --json -b "$ADDR"
        sync
        measure "$b" lat java-perf java-produce prodperf "lat-java-$r" $((RATE * E2E_SECS)) 100 "$RATE" all
        sync
        measure "$b" e2e spool-bench spool "$SPOOL" bench e2e --topic "e2e-spool-$r" --record-size 100 \
            --duration "$E2E_SECS" --throughput "$RATE" --json -b "$ADDR"
        # The same without the producer's 5 ms linger, so the broker's share of the latency shows.
        sync
        measure "$b" e2e0 spool-bench spool "$SPOOL" bench e2e --topic "e2e0-spool-$r" --record-size 100 \
            --duration "$E2E_SECS" --throughput "$RATE" --linger-ms 0 --json -b "$ADDR"
    done
    REP=1
    # Did every record land? Sum of the end offsets of each produce topic (kcat -Q, latest = -1).
    local t n parts args
    for t in $(produce_topics); do
        parts=${t#*:}; t=${t%:*}
        args=(); for ((n = 0; n < parts; n++)); do args+=(-t "$t:$n:-1"); done
        n=$(kcat -Q -b "$ADDR" "${args[@]}" 2>/dev/null | awk '/offset/ {s += $NF} END {print s + 0}')
        record broker="$b" workload="verify-$t" client=- kind=verify topic="$t" end_offsets="$n"
    done
    record broker="$b" workload=final client=- kind=final hwm_kb="$(hwm_kb "$BPID")" \
        cpu_s="$(python3 -c "print(round($(cpu_ticks "$BPID") / $CLK_TCK, 2))")"
}

# ---------------------------------------------------------------------------------------------
[[ -x $SPOOL ]] || { echo "no $SPOOL: cargo build --release -p spool-cli" >&2; exit 1; }
ls "$KAFKA_LIBS"/kafka-tools-*.jar > /dev/null 2>&1 || { echo "no Kafka jars in $KAFKA_LIBS" >&2; exit 1; }
command -v kcat > /dev/null || { echo "kcat not found" >&2; exit 1; }
log "work dir $WORK; records: $N_SMALL x 100 B, $N_BIG x 1 KiB; latency runs ${E2E_SECS}s at $RATE/s"

# kcat input files: one record a line (the newline is the delimiter, not part of the record).
python3 - "$WORK" "$N_SMALL" "$N_BIG" <<'EOF'
import random, string, sys
work, n_small, n_big = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pool = "".join(random.choice(string.ascii_uppercase) for _ in range(1024 + 4096))
for name, n, size in (("rec100.txt", n_small, 100), ("rec1k.txt", n_big, 1024)):
    with open(f"{work}/{name}", "w") as f:
        for i in range(n):
            s = (i * 7919) % 4097
            f.write(pool[s:s + size] + "\n")
EOF

# Start-up takes ~10 ms for Spool, so one timing is at the mercy of a single scheduling hiccup:
# each broker is started START_REPEAT times from a fresh data directory (the report takes the
# median); the last start runs the workloads.
log "starting spool"
for ((i = 1; i < START_REPEAT; i++)); do
    start_spool || exit 1; stop_broker; rm -rf "$WORK"/spool-data # even with KEEP=1
done
start_spool || exit 1
run_workloads spool
stop_broker
drop_data "$WORK"/spool-data
log "spool stopped; starting kafka"
sync; sleep 2
for ((i = 1; i < START_REPEAT; i++)); do
    start_kafka || exit 1; stop_broker; rm -rf "$WORK"/kafka/logs # formatted afresh next time
done
start_kafka || exit 1
run_workloads kafka
stop_broker
log "kafka stopped; writing $OUT"

python3 "$REPO/bench/report.py" "$RESULTS" "$OUT" "$REPO" "$CMDLINE" "$N_SMALL" "$N_BIG" "$E2E_SECS" "$RATE" \
    "$KAFKA_LIBS" || exit 1
log "done: $OUT (raw results: $RESULTS)"
