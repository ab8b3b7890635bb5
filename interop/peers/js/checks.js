'use strict'
// Checks and deadlines shared by the scenarios: a failed check throws CheckFailed with what was expected and seen.

const util = require('util')

class CheckFailed extends Error {}
/** A step of the contract kafkajs has no API for: the peer exits 3 (see interop/SCENARIOS.md). */
class ClientLacksApi extends Error {}

/** Thrown from a waitFor probe to stop waiting at once (e.g. a consumer crashed). */
class Fatal extends Error {
  constructor (cause) {
    super(cause.message)
    this.cause = cause
  }
}

/** A value as it should read in a failure message (Buffers as their UTF-8 text, null kept apart from ""). */
function show (value) {
  return util.inspect(plain(value), { depth: 6, breakLength: 160, maxArrayLength: 20 })
}

function plain (value) {
  if (Buffer.isBuffer(value)) return value.toString('utf8')
  if (Array.isArray(value)) return value.map(plain)
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]))
  }
  return value
}

const STARTED = Date.now()

/** A progress line on stdout, with the seconds since the peer started. */
function progress (line) {
  console.log(`[${((Date.now() - STARTED) / 1000).toFixed(3).padStart(7)}s] ${line}`)
}

function ok (what) {
  progress(`ok: ${what}`)
}

/** Deep equality on plain values (Buffers compared as text); prints "ok: what" or throws. */
function checkEqual (what, expected, seen) {
  if (!util.isDeepStrictEqual(plain(expected), plain(seen))) {
    throw new CheckFailed(`${what}: expected ${show(expected)}, seen ${show(seen)}`)
  }
  ok(what)
}

function check (what, condition, detail = '') {
  if (!condition) throw new CheckFailed(detail ? `${what}: ${detail}` : what)
  ok(what)
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

/**
 * Polls `probe` until it returns a truthy value (returned) or the deadline passes (CheckFailed naming `what` and the
 * last result or error). `probe` may be async; an error it throws is remembered and polling goes on.
 */
async function waitFor (what, probe, { timeoutMs = 30_000, intervalMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs
  let last
  for (;;) {
    try {
      const result = await withDeadline(Promise.resolve(probe()), Math.max(deadline - Date.now(), 1), what)
      if (result) return result
      last = result
    } catch (err) {
      if (err instanceof Fatal) throw err.cause
      last = err
    }
    if (Date.now() >= deadline) {
      const lastText = last instanceof Error ? `${last.name}: ${last.message}` : show(last)
      throw new CheckFailed(`timed out after ${timeoutMs / 1000} s waiting for ${what}; last result: ${lastText}`)
    }
    await sleep(intervalMs)
  }
}

/** The promise's result, or CheckFailed once `ms` have passed. */
async function withDeadline (promise, ms, what) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new CheckFailed(`${what} did not finish within ${ms / 1000} s`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

module.exports = { CheckFailed, ClientLacksApi, Fatal, check, checkEqual, ok, progress, show, sleep, waitFor, withDeadline }
