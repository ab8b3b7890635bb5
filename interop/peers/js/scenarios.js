'use strict'
// The nine scenarios of interop/SCENARIOS.md with kafkajs. Each takes { kafkajs, bootstrap, prefix, closest } and
// throws CheckFailed at the first check that does not hold.
//
// kafkajs has no API for two steps of the contract; those fail unless --closest is given (see peer.js):
//   - produce-headers-nulls: headers are a JS object keyed by name, a repeated name being an array of values. So it
//     cannot send h1=x, h2=y, h1=z in that order (it sends h1=x, h1=z, h2=y), and a consumed record cannot tell the
//     order of different names either. (Null header values: the API takes them but the encoder throws computing
//     their size, so record e carries an empty header value, as the contract allows for such clients.)
//   - consume-offsets: every kafkajs consumer is a group member (groupId is mandatory, there is no assign()); the
//     seek to 42 is done by the only member of a throwaway group instead.

const { CheckFailed, ClientLacksApi, check, checkEqual, ok, progress, waitFor, withDeadline } = require('./checks')
const {
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
} = require('./client')

const TIMEOUT_MS = 30_000
const text = buf => (buf === null || buf === undefined ? buf : buf.toString('utf8'))
const range = (from, to) => Array.from({ length: to - from }, (_, i) => from + i)

/** Runs body(kafka, admin) with a connected admin client, disconnected afterwards. */
async function withAdmin (opts, body) {
  const kafka = makeKafka(opts.kafkajs, opts)
  const admin = await connectAdmin(kafka)
  try {
    return await body(kafka, admin)
  } finally {
    await withDeadline(admin.disconnect(), TIMEOUT_MS, 'admin.disconnect()')
  }
}

/** Connects a producer, runs body(producer), disconnects. */
async function withProducer (kafka, kafkajs, options, body) {
  const producer = makeProducer(kafka, kafkajs, options)
  await withDeadline(producer.connect(), TIMEOUT_MS, 'producer.connect()')
  try {
    return await body(producer)
  } finally {
    await withDeadline(producer.disconnect(), TIMEOUT_MS, 'producer.disconnect()')
  }
}

function checkOffsetsInOrder (what, records, from, to) {
  checkEqual(`${what}: offsets ${from}..${to - 1} in order`, range(from, to), records.map(r => r.offset))
}

// ---------------------------------------------------------------------------------------------------------------

async function produceCodecs (opts) {
  const { kafkajs, prefix } = opts
  const { CompressionTypes } = kafkajs
  const codecs = [
    ['none', CompressionTypes.None],
    ['gzip', CompressionTypes.GZIP],
    ['snappy', CompressionTypes.Snappy],
    ['lz4', CompressionTypes.LZ4],
    ['zstd', CompressionTypes.ZSTD],
  ]
  const topic = `${prefix}-codecs`
  await withAdmin(opts, async (kafka, admin) => {
    await createTopic(admin, topic, 1)
    const expected = []
    for (const [name, compression] of codecs) {
      // A producer per codec, as the contract says; one send() is one compressed batch, acked before it returns.
      const messages = range(0, 20).map(i => ({ key: `k-${name}-${i}`, value: `v-${name}-${i}`, partition: 0 }))
      await withProducer(kafka, kafkajs, {}, producer => send(producer, { topic, acks: -1, compression, messages }))
      ok(`produced 20 records with compression ${name}`)
      expected.push(...messages.map(m => [m.key, m.value]))
    }
    const records = await readAll(kafka, admin, { topic, groupId: `${prefix}-codecs-reader` })
    checkEqual('100 records read back', 100, records.length)
    checkOffsetsInOrder('partition 0', records, 0, 100)
    checkEqual('keys and values, in produce order', expected, records.map(r => [text(r.key), text(r.value)]))
  })
}

async function produceHeadersNulls (opts) {
  const { kafkajs, prefix, closest } = opts
  const topic = `${prefix}-hdr`
  // h1=x, h2=y, h1=z cannot be expressed (see the top of this file); the closest kafkajs sends is h1=x, h1=z, h2=y.
  if (!closest) {
    throw new ClientLacksApi(
      'kafkajs cannot send headers h1=x, h2=y, h1=z in that order: its headers are an object keyed by name ' +
        '({h1: ["x", "z"], h2: "y"} goes out as h1=x, h1=z, h2=y), and it hands consumed headers back the same way'
    )
  }
  progress('closest: record a carries h1=x, h1=z, h2=y (kafkajs groups header values by name)')
  const sent = [
    { key: 'a', value: '1', headers: { h1: ['x', 'z'], h2: 'y' } },
    { key: 'b', value: null },
    { key: null, value: '3' },
    { key: 'd', value: Buffer.alloc(0) },
    // A null header value cannot be sent (see the top of this file): empty, as the contract allows.
    { key: 'e', value: '5', headers: { e: Buffer.alloc(0) } },
  ]
  await withAdmin(opts, async (kafka, admin) => {
    await createTopic(admin, topic, 1)
    await withProducer(kafka, kafkajs, {}, async producer => {
      // One send() per record keeps the produce order obvious (each is acked before the next goes).
      for (const record of sent) await send(producer, { topic, acks: -1, messages: [{ ...record, partition: 0 }] })
    })
    ok('produced records a, b, (null key), d, e')
    const records = await readAll(kafka, admin, { topic, groupId: `${prefix}-hdr-reader` })
    checkEqual('5 records read back', 5, records.length)
    checkOffsetsInOrder('partition 0', records, 0, 5)
    // kafkajs hands keys and values back as Buffers, or null for a null one: compare them as such, so that an
    // empty value read back as null (or the reverse) fails.
    const asSent = ({ key, value, headers = {} }) => ({
      key: key === null ? null : Buffer.from(key),
      value: value === null ? null : Buffer.from(value),
      headers,
    })
    for (let i = 0; i < sent.length; i++) {
      const want = asSent(sent[i])
      const got = records[i]
      const what = `record ${i} (key ${JSON.stringify(text(want.key))})`
      for (const field of ['key', 'value']) {
        const [w, g] = [want[field], got[field]]
        check(`${what}: ${field} ${w === null ? 'null' : 'not null'}`, (g === null) === (w === null),
          `expected ${field} ${JSON.stringify(text(w))}, read ${JSON.stringify(text(g))}`)
      }
      checkEqual(`${what}: key and value bytes`, [want.key, want.value], [got.key, got.value])
      // Header names in order of first appearance, each with its values in order (duplicates kept).
      checkEqual(`${what}: headers`, Object.entries(want.headers), Object.entries(got.headers))
    }
  })
}

async function produceIdempotent (opts) {
  const { kafkajs, prefix } = opts
  const topic = `${prefix}-idem`
  await withAdmin(opts, async (kafka, admin) => {
    await createTopic(admin, topic, 3)
    // kafkajs's idempotent producer: InitProducerId, sequence numbers per partition; it needs acks=-1 and (its docs)
    // at most one request in flight.
    // Unlimited retries too: kafkajs warns that fewer may break its guarantees (each send() has its own deadline).
    const idempotent = {
      idempotent: true,
      maxInFlightRequests: 1,
      retry: { retries: Number.MAX_SAFE_INTEGER, maxRetryTime: 2_000 },
    }
    await withProducer(kafka, kafkajs, idempotent, async producer => {
      for (let batch = 0; batch < 10; batch++) {
        const messages = range(batch * 100, batch * 100 + 100).map(i => ({ key: `key-${i}`, value: String(i) }))
        await send(producer, { topic, acks: -1, messages })
      }
    })
    ok('idempotent producer sent 1000 records (acks=-1)')
    const records = await readAll(kafka, admin, { topic, groupId: `${prefix}-idem-reader` })
    checkEqual('exactly 1000 records on the 3 partitions', 1000, records.length)
    const values = records.map(r => Number(text(r.value)))
    checkEqual('no duplicates: values 0..999 each once', range(0, 1000), [...values].sort((a, b) => a - b))
    const partitionOfKey = new Map()
    for (const p of [0, 1, 2]) {
      const here = records.filter(r => r.partition === p)
      const vals = here.map(r => Number(text(r.value)))
      const increasing = vals.every((v, i) => i === 0 || v > vals[i - 1])
      check(`partition ${p}: values increase (${here.length} records)`, increasing,
        `values ${JSON.stringify(vals.slice(0, 30))}...`)
      checkOffsetsInOrder(`partition ${p}`, here, 0, here.length)
      for (const r of here) {
        const key = text(r.key)
        if (partitionOfKey.has(key) && partitionOfKey.get(key) !== p) {
          throw new CheckFailed(`key ${key} is in partitions ${partitionOfKey.get(key)} and ${p}`)
        }
        partitionOfKey.set(key, p)
        if (key !== `key-${text(r.value)}`) throw new CheckFailed(`record ${key} carries value ${text(r.value)}`)
      }
    }
    ok('records with the same key are in one partition, each key with its own value')
  })
}

async function consumeOffsets (opts) {
  const { kafkajs, prefix, closest } = opts
  const topic = `${prefix}-offsets`
  await withAdmin(opts, async (kafka, admin) => {
    await createTopic(admin, topic, 1)
    await withProducer(kafka, kafkajs, {}, producer =>
      send(producer, { topic, acks: -1, messages: range(0, 100).map(i => ({ value: String(i), partition: 0 })) })
    )
    ok('produced 100 records')
    // ListOffsets (earliest and latest) through the admin API.
    const offsets = await withDeadline(admin.fetchTopicOffsets(topic), TIMEOUT_MS, 'fetchTopicOffsets')
    checkEqual('ListOffsets: earliest 0, latest 100', [{ partition: 0, low: '0', high: '100' }],
      offsets.map(({ partition, low, high }) => ({ partition, low, high })))

    if (!closest) {
      throw new ClientLacksApi(
        'kafkajs has no consumer without a group: Kafka#consumer requires a groupId and a consumer only gets ' +
          'partitions by subscribing (there is no assign())'
      )
    }
    progress('closest: the seek is done by the only member of a throwaway group (kafkajs has no assign())')
    // Subscribe at the end of the log (nothing to read) and seek once partition 0 is assigned, so no fetch from 0
    // can race the seek.
    const state = await startConsumer(kafka, { groupId: `${prefix}-offsets-seek`, topic, fromBeginning: false })
    try {
      await waitForAssignment(state, 'partition 0 assigned', a => a.includes(0))
      state.consumer.seek({ topic, partition: 0, offset: '42' })
      await waitForRecords([state], 58, 'reading from offset 42 to the end')
    } finally {
      await stopConsumer(state)
    }
    checkEqual('read exactly offsets 42..99', range(42, 100), state.records.map(r => r.offset))
    checkEqual("values '42'..'99'", range(42, 100).map(String), state.records.map(r => text(r.value)))
  })
}

async function consumeTimestamp (opts) {
  const { kafkajs, prefix } = opts
  const topic = `${prefix}-ts`
  const t0 = Math.floor((Date.now() - 3_600_000) / 1000) * 1000
  await withAdmin(opts, async (kafka, admin) => {
    await createTopic(admin, topic, 1)
    const messages = range(0, 100).map(i => ({ value: String(i), partition: 0, timestamp: String(t0 + i * 1000) }))
    await withProducer(kafka, kafkajs, {}, producer => send(producer, { topic, acks: -1, messages }))
    ok(`produced 100 records with CreateTime T0 + i*1000, T0 = ${t0}`)

    const offsetFor = async ts => {
      const result = await withDeadline(admin.fetchTopicOffsetsByTimestamp(topic, ts), TIMEOUT_MS,
        `fetchTopicOffsetsByTimestamp(${ts})`)
      checkEqual(`ListOffsets for timestamp ${ts}: one partition`, [0], result.map(r => r.partition))
      return result[0].offset
    }
    checkEqual('offset for T0 + 50500', '51', await offsetFor(t0 + 50_500))
    checkEqual('offset for T0', '0', await offsetFor(t0))
    // The broker answers -1 (no such record); kafkajs's fetchTopicOffsetsByTimestamp documents that it returns the
    // latest offset (the end, 100) in that case rather than -1.
    checkEqual('offset for T0 + 200000: none, which kafkajs reports as the end (100)', '100',
      await offsetFor(t0 + 200_000))

    const state = await startConsumer(kafka, { groupId: `${prefix}-ts-reader`, topic, fromBeginning: false })
    try {
      await waitForAssignment(state, 'partition 0 assigned', a => a.includes(0))
      state.consumer.seek({ topic, partition: 0, offset: '51' })
      await waitForRecords([state], 49, 'reading from offset 51 to the end')
    } finally {
      await stopConsumer(state)
    }
    checkEqual('read exactly offsets 51..99', range(51, 100), state.records.map(r => r.offset))
    checkEqual('each record carries its CreateTime T0 + i*1000', range(51, 100).map(i => t0 + i * 1000),
      state.records.map(r => r.timestamp))
    checkEqual("values '51'..'99'", range(51, 100).map(String), state.records.map(r => text(r.value)))
  })
}

async function groupRebalance (opts) {
  const { kafkajs, prefix } = opts
  const topic = `${prefix}-grp`
  const groupId = `${prefix}-g`
  const all = [0, 1, 2, 3]
  await withAdmin(opts, async (kafka, admin) => {
    await createTopic(admin, topic, 4)
    const a = await startConsumer(kafka, { groupId, topic, fromBeginning: true, name: 'A' })
    let aOpen = true
    const b = await startConsumer(kafka, { groupId, topic, fromBeginning: true, name: 'B' })
    try {
      await waitFor('A and B to own disjoint partitions, together all 4, each at least one', () => {
        if (a.assignment === null || b.assignment === null) return false
        const union = [...a.assignment, ...b.assignment].sort((x, y) => x - y)
        return a.assignment.length > 0 && b.assignment.length > 0 && JSON.stringify(union) === JSON.stringify(all)
      }, { timeoutMs: TIMEOUT_MS })
      ok(`assignments: A [${a.assignment}], B [${b.assignment}] (kafkajs default assignor: round robin)`)

      await withProducer(kafka, kafkajs, {}, producer =>
        send(producer, { topic, acks: -1, messages: range(0, 100).map(i => ({ key: `k-${i}`, value: String(i) })) })
      )
      ok('produced 100 records k-0..k-99')
      const first = await waitForRecords([a, b], 100, 'A and B to receive the 100 records')
      checkEqual('A and B received each of k-0..k-99 exactly once', range(0, 100).map(i => `k-${i}`),
        first.map(r => text(r.key)).sort((x, y) => Number(x.slice(2)) - Number(y.slice(2))))
      for (const c of [a, b]) {
        const foreign = c.records.filter(r => !c.assignment.includes(r.partition))
        check(`${c.name} received only records of its own partitions`, foreign.length === 0,
          `${foreign.length} from partitions ${[...new Set(foreign.map(r => r.partition))]}`)
      }

      // Commit synchronously what each consumed: the next offset of every partition it owns (0 when it got none).
      for (const c of [a, b]) {
        const commits = c.assignment.map(p => {
          const mine = c.records.filter(r => r.partition === p)
          return { topic, partition: p, offset: String(mine.length ? Math.max(...mine.map(r => r.offset)) + 1 : 0) }
        })
        await withDeadline(c.consumer.commitOffsets(commits), TIMEOUT_MS, `${c.name}: commitOffsets`)
        ok(`${c.name} committed ${JSON.stringify(commits.map(({ partition, offset }) => [partition, offset]))}`)
      }
      const committed = await withDeadline(admin.fetchOffsets({ groupId, topics: [topic] }), TIMEOUT_MS, 'fetchOffsets')
      const ends = await withDeadline(admin.fetchTopicOffsets(topic), TIMEOUT_MS, 'fetchTopicOffsets')
      checkEqual('committed offsets are the end of every partition',
        ends.map(e => [e.partition, e.high]).sort(), committed[0].partitions.map(p => [p.partition, p.offset]).sort())

      // Counted before A leaves: every record B gets from here on (during the rebalance too) must be new.
      const before = b.records.length
      await stopConsumer(a)
      aOpen = false
      ok('A left the group (disconnect)')
      await waitForAssignment(b, 'B to own all 4 partitions after A left',
        asg => JSON.stringify(asg) === JSON.stringify(all))
      ok('B owns all 4 partitions')

      await withProducer(kafka, kafkajs, {}, producer =>
        send(producer, { topic, acks: -1, messages: range(100, 140).map(i => ({ key: `k-${i}`, value: String(i) })) })
      )
      ok('produced 40 more records k-100..k-139')
      await waitFor('B to receive the 40 new records', () => {
        const keys = new Set(b.records.slice(before).map(r => text(r.key)))
        return range(100, 140).every(i => keys.has(`k-${i}`))
      }, { timeoutMs: TIMEOUT_MS })
      const after = b.records.slice(before).map(r => text(r.key))
      checkEqual('B received exactly the 40 new records, none of the first 100 again',
        range(100, 140).map(i => `k-${i}`), after.sort((x, y) => Number(x.slice(2)) - Number(y.slice(2))))
    } finally {
      if (aOpen) await stopConsumer(a)
      await stopConsumer(b)
    }
  })
}

async function offsetsCommitFetch (opts) {
  const { kafkajs, prefix } = opts
  const topic = `${prefix}-commit`
  const groupId = `${prefix}-g`
  await withAdmin(opts, async (kafka, admin) => {
    await createTopic(admin, topic, 2)
    await withProducer(kafka, kafkajs, {}, producer =>
      send(producer, {
        topic,
        acks: -1,
        messages: [0, 1].flatMap(p => range(0, 10).map(i => ({ value: `p${p}-${i}`, partition: p }))),
      })
    )
    ok('produced 10 records in each of the 2 partitions')

    // The first member starts at the end of the log, so it reads nothing; its commits are the only ones.
    const first = await startConsumer(kafka, { groupId, topic, fromBeginning: false, name: 'first' })
    try {
      await waitForAssignment(first, 'both partitions assigned', a => a.length === 2)
      await withDeadline(first.consumer.commitOffsets([
        { topic, partition: 0, offset: '3', metadata: 'm0' },
        { topic, partition: 1, offset: '7', metadata: 'm1' },
      ]), TIMEOUT_MS, 'commitOffsets')
      ok('committed offset 3 (metadata m0) for partition 0 and 7 (m1) for partition 1')
      // kafkajs consumers have no committed(); the admin API's fetchOffsets is the OffsetFetch request.
      const fetched = await withDeadline(admin.fetchOffsets({ groupId, topics: [topic] }), TIMEOUT_MS, 'fetchOffsets')
      checkEqual('OffsetFetch returns 3 (m0) and 7 (m1)',
        [{
          topic,
          partitions: [{ partition: 0, offset: '3', metadata: 'm0' }, { partition: 1, offset: '7', metadata: 'm1' }],
        }],
        fetched.map(t => ({
          topic: t.topic,
          partitions: t.partitions.map(({ partition, offset, metadata }) => ({ partition, offset, metadata }))
            .sort((x, y) => x.partition - y.partition),
        })))
    } finally {
      await stopConsumer(first)
    }
    ok('first consumer closed')

    const second = await startConsumer(kafka, { groupId, topic, fromBeginning: true, name: 'second' })
    try {
      await waitFor('the new consumer to read from both partitions', () =>
        [0, 1].every(p => second.records.some(r => r.partition === p)), { timeoutMs: TIMEOUT_MS })
    } finally {
      await stopConsumer(second)
    }
    const firstOffset = p => second.records.find(r => r.partition === p).offset
    checkEqual('the new consumer starts at the committed offsets (partition 0: 3, partition 1: 7)',
      [3, 7], [firstOffset(0), firstOffset(1)])
  })
}

async function adminTopics (opts) {
  const { kafkajs, prefix } = opts
  const { ConfigResourceTypes } = kafkajs
  const topic = `${prefix}-adm`
  await withAdmin(opts, async (kafka, admin) => {
    await createTopic(admin, topic, 2, [{ name: 'retention.ms', value: '3600000' }])
    check('it is listed', (await admin.listTopics()).includes(topic))
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] })
    checkEqual('described with 2 partitions', [0, 1], topics[0].partitions.map(p => p.partitionId).sort())
    const configs = await withDeadline(admin.describeConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['retention.ms'] }],
      includeSynonyms: false,
    }), TIMEOUT_MS, 'describeConfigs')
    const entry = configs.resources[0].configEntries.find(e => e.configName === 'retention.ms')
    checkEqual('config retention.ms', '3600000', entry && entry.configValue)

    // kafkajs's createTopics resolves to false exactly when every topic error of the response is
    // TOPIC_ALREADY_EXISTS; any other error rejects.
    const again = await withDeadline(admin.createTopics({ topics: [{ topic, numPartitions: 2 }], timeout: 10_000 }),
      TIMEOUT_MS, 'createTopics again')
    checkEqual('creating it again fails with TOPIC_ALREADY_EXISTS (createTopics returns false)', false, again)

    await withDeadline(admin.createPartitions({ topicPartitions: [{ topic, count: 4 }] }), TIMEOUT_MS,
      'createPartitions')
    ok('added partitions up to 4')
    await waitForPartitions(admin, topic, 4)
    ok('described with 4 partitions')

    await withDeadline(admin.deleteTopics({ topics: [topic], timeout: 10_000 }), TIMEOUT_MS, 'deleteTopics')
    ok('deleted it')
    await waitFor(`${topic} to be no longer listed`, async () => !(await admin.listTopics()).includes(topic))
    ok('no longer listed')
    // A fresh client (no cached metadata, no retries) asks for the deleted topic.
    const probeKafka = makeKafka(kafkajs, opts)
    const probe = probeKafka.admin({ retry: { retries: 0 } })
    await withDeadline(probe.connect(), TIMEOUT_MS, 'probe admin.connect()')
    try {
      const error = await waitFor('metadata for the deleted topic to answer UNKNOWN_TOPIC_OR_PARTITION', async () => {
        try {
          await probe.fetchTopicMetadata({ topics: [topic] })
          return null
        } catch (err) {
          const type = err.type || (err.originalError && err.originalError.type)
          return type === 'UNKNOWN_TOPIC_OR_PARTITION' ? type : Promise.reject(err)
        }
      })
      ok(`metadata answers ${error}`)
    } finally {
      await withDeadline(probe.disconnect(), TIMEOUT_MS, 'probe admin.disconnect()')
    }
  })
}

async function adminGroups (opts) {
  const { kafkajs, prefix } = opts
  const { AssignerProtocol } = kafkajs
  const topic = `${prefix}-ag`
  const groupId = `${prefix}-g`
  await withAdmin(opts, async (kafka, admin) => {
    await createTopic(admin, topic, 2)
    await withProducer(kafka, kafkajs, {}, producer =>
      send(producer, { topic, acks: -1, messages: [0, 1].map(p => ({ value: `r${p}`, partition: p })) })
    )
    ok('produced 1 record in each partition')
    const consumer = await startConsumer(kafka, { groupId, topic, fromBeginning: true, name: 'member' })
    let open = true
    try {
      await waitForAssignment(consumer, 'both partitions assigned', a => a.length === 2)
      await waitForRecords([consumer], 2, 'the member to read both records')
      checkEqual('read offset 0 of each partition', [[0, 0], [1, 0]],
        consumer.records.map(r => [r.partition, r.offset]).sort())
      await withDeadline(consumer.consumer.commitOffsets([0, 1].map(p => ({ topic, partition: p, offset: '1' }))),
        TIMEOUT_MS, 'commitOffsets')
      ok('committed 1 and 1')

      const listed = await withDeadline(admin.listGroups(), TIMEOUT_MS, 'listGroups')
      check(`list groups contains ${groupId}`, listed.groups.some(g => g.groupId === groupId),
        `listed ${JSON.stringify(listed.groups)}`)
      const described = await withDeadline(admin.describeGroups([groupId]), TIMEOUT_MS, 'describeGroups')
      const group = described.groups[0]
      checkEqual('describe: state, protocol type, one member',
        { groupId, errorCode: 0, state: 'Stable', protocolType: 'consumer', members: 1 },
        {
          groupId: group.groupId,
          errorCode: group.errorCode,
          state: group.state,
          protocolType: group.protocolType,
          members: group.members.length,
        })
      const assignment = AssignerProtocol.MemberAssignment.decode(group.members[0].memberAssignment)
      checkEqual("describe: the member's assignment is both partitions", { [topic]: [0, 1] },
        Object.fromEntries(Object.entries(assignment.assignment).map(([t, ps]) => [t, [...ps].sort()])))
      const offsets = await withDeadline(admin.fetchOffsets({ groupId, topics: [topic] }), TIMEOUT_MS, 'fetchOffsets')
      checkEqual('group offsets listed by the admin API: 1 and 1', [[0, '1'], [1, '1']],
        offsets[0].partitions.map(p => [p.partition, p.offset]).sort())

      await stopConsumer(consumer)
      open = false
      ok('the member closed')
    } finally {
      if (open) await stopConsumer(consumer)
    }
    const empty = await waitFor(`describe to show ${groupId} Empty`, async () => {
      const { groups } = await admin.describeGroups([groupId])
      return groups[0].state === 'Empty' ? groups[0] : null
    })
    checkEqual('describe after close: Empty, no members', ['Empty', 0], [empty.state, empty.members.length])
    const deleted = await withDeadline(admin.deleteGroups([groupId]), TIMEOUT_MS, 'deleteGroups')
    checkEqual('deleteGroups', [{ groupId, errorCode: 0 }],
      deleted.map(({ groupId, errorCode }) => ({ groupId, errorCode })))
    await waitFor(`${groupId} to be no longer listed`, async () =>
      !(await admin.listGroups()).groups.some(g => g.groupId === groupId))
    ok('the group is no longer listed')
  })
}

const SCENARIOS = {
  'produce-codecs': produceCodecs,
  'produce-headers-nulls': produceHeadersNulls,
  'produce-idempotent': produceIdempotent,
  'consume-offsets': consumeOffsets,
  'consume-timestamp': consumeTimestamp,
  'group-rebalance': groupRebalance,
  'offsets-commit-fetch': offsetsCommitFetch,
  'admin-topics': adminTopics,
  'admin-groups': adminGroups,
}

module.exports = { SCENARIOS }
