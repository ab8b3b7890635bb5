'use strict'
// kafkajs clients configured for the scenarios: short waits and deadlines everywhere, logs to stderr.

const { CheckFailed, Fatal, check, progress, waitFor, withDeadline } = require('./checks')

const REQUEST_TIMEOUT_MS = 30_000

function makeKafka (kafkajs, { bootstrap, prefix }) {
  const { Kafka, logLevel } = kafkajs
  // kafkajs prints through console.log by default; the contract wants stdout for progress, so logs go to stderr.
  const logCreator = () => ({ namespace, level, label, log }) => {
    const { message, timestamp, logger, ...extra } = log
    console.error(`${timestamp} kafkajs ${label} [${namespace}] ${message} ${JSON.stringify(extra)}`)
  }
  return new Kafka({
    clientId: `spool-interop-${prefix}`,
    brokers: [bootstrap],
    connectionTimeout: 5_000,
    requestTimeout: REQUEST_TIMEOUT_MS,
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2_000 },
    logLevel: logLevel.WARN,
    logCreator,
  })
}

function makeProducer (kafka, kafkajs, options = {}) {
  return kafka.producer({
    allowAutoTopicCreation: false,
    // kafkajs 2's default partitioner is the Java client's (murmur2); naming it silences its v2 migration warning.
    createPartitioner: kafkajs.Partitioners.DefaultPartitioner,
    ...options,
  })
}

/** An admin client, connected; the caller disconnects it. */
async function connectAdmin (kafka) {
  const admin = kafka.admin()
  await withDeadline(admin.connect(), REQUEST_TIMEOUT_MS, 'admin.connect()')
  return admin
}

/** Creates a topic through the admin API and waits until metadata shows every partition with a leader. */
async function createTopic (admin, topic, numPartitions, configEntries = []) {
  const created = await withDeadline(
    admin.createTopics({ topics: [{ topic, numPartitions, configEntries }], waitForLeaders: true, timeout: 20_000 }),
    REQUEST_TIMEOUT_MS,
    `createTopics(${topic})`
  )
  check(`created topic ${topic} (${numPartitions} partitions)`, created === true, `createTopics returned ${created}`)
  await waitForPartitions(admin, topic, numPartitions)
}

/** Waits until fetchTopicMetadata shows `count` partitions of `topic`, each with a leader. */
async function waitForPartitions (admin, topic, count) {
  return waitFor(`metadata to show ${topic} with ${count} partitions, each with a leader`, async () => {
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] })
    const partitions = topics.find(t => t.name === topic)?.partitions || []
    return partitions.length === count && partitions.every(p => p.partitionErrorCode === 0 && p.leader >= 0)
      ? partitions
      : null
  })
}

/** Sends and waits for the acks (kafkajs resolves send() only once the broker acknowledged: a flush). */
async function send (producer, record) {
  return withDeadline(producer.send(record), 60_000, `producer.send to ${record.topic}`)
}

/**
 * A group consumer subscribed to `topic` and running (auto commit off), collecting every record it receives.
 * `state.assignment` is its partitions of `topic` from its latest join (kafkajs's GROUP_JOIN event).
 */
async function startConsumer (kafka, { groupId, topic, fromBeginning, name = groupId }) {
  const consumer = kafka.consumer({
    groupId,
    // Short intervals so joins, rebalances and empty fetches take well under a second (defaults: 3 s, 5 s).
    heartbeatInterval: 300,
    sessionTimeout: 10_000,
    rebalanceTimeout: 20_000,
    maxWaitTimeInMs: 200,
    allowAutoTopicCreation: false,
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2_000 },
  })
  const state = { name, consumer, assignment: null, joins: 0, records: [], crash: null }
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    state.joins += 1
    state.assignment = [...(payload.memberAssignment[topic] || [])].sort((a, b) => a - b)
    progress(`${name}: joined ${groupId} (join #${state.joins}), assigned ${topic} partitions [${state.assignment}]`)
  })
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    state.crash = payload.error
    console.error(`${name}: consumer crashed: ${payload.error && payload.error.stack}`)
  })
  await withDeadline(consumer.connect(), REQUEST_TIMEOUT_MS, `${name}: consumer.connect()`)
  await withDeadline(consumer.subscribe({ topics: [topic], fromBeginning }), REQUEST_TIMEOUT_MS, `${name}: subscribe`)
  await withDeadline(
    consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        state.records.push({
          partition,
          offset: Number(message.offset),
          key: message.key,
          value: message.value,
          headers: message.headers,
          timestamp: Number(message.timestamp),
        })
      },
    }),
    REQUEST_TIMEOUT_MS,
    `${name}: consumer.run()`
  )
  return state
}

/** Throws (ends a waitFor at once) if the consumer crashed. */
function assertAlive (state) {
  if (state.crash) throw new Fatal(new CheckFailed(`${state.name}: consumer crashed: ${state.crash.message}`))
}

async function waitForAssignment (state, what, predicate, timeoutMs = 30_000) {
  return waitFor(`${state.name}: ${what}`, () => {
    assertAlive(state)
    return state.assignment !== null && predicate(state.assignment)
  }, { timeoutMs })
}

/** Waits until the consumers together received at least `count` records; returns them. */
async function waitForRecords (states, count, what, timeoutMs = 30_000) {
  const all = () => states.flatMap(s => s.records)
  await waitFor(`${what} (${count} records)`, () => {
    states.forEach(assertAlive)
    return all().length >= count
  }, { timeoutMs })
  return all()
}

async function stopConsumer (state) {
  await withDeadline(state.consumer.disconnect(), REQUEST_TIMEOUT_MS, `${state.name}: consumer.disconnect()`)
}

/**
 * Reads `topic` from the beginning with a throwaway group until it has every record up to the end of the log (the
 * high watermarks, taken first: call it once the producers are done); returns the records in arrival order.
 * Reading to the end, rather than to an expected count, means records that should not be there are seen too.
 */
async function readAll (kafka, admin, { topic, groupId }) {
  const ends = await withDeadline(admin.fetchTopicOffsets(topic), REQUEST_TIMEOUT_MS, `fetchTopicOffsets(${topic})`)
  const state = await startConsumer(kafka, { groupId, topic, fromBeginning: true, name: `reader ${groupId}` })
  const reachedEnd = ({ partition, high }) =>
    Number(high) === 0 || state.records.some(r => r.partition === partition && r.offset === Number(high) - 1)
  try {
    await waitFor(`reading ${topic} from the beginning up to the end offsets ${JSON.stringify(ends)}`, () => {
      assertAlive(state)
      return ends.every(reachedEnd)
    })
  } finally {
    await stopConsumer(state)
  }
  return state.records
}

module.exports = {
  assertAlive,
  connectAdmin,
  createTopic,
  makeKafka,
  makeProducer,
  readAll,
  send,
  startConsumer,
  stopConsumer,
  waitForAssignment,
  waitForPartitions,
  waitForRecords,
}
