#!/usr/bin/env node
'use strict'
// kafkajs peer program of the interop suite (contract and scenarios: interop/SCENARIOS.md).
//   node peer.js --bootstrap HOST:PORT --scenario NAME --prefix PREFIX [--closest]
//   node peer.js --version          prints the kafkajs version
// Exit 0 when every check of the scenario held; otherwise what went wrong (expected vs seen) on stderr and exit 1,
// or exit 3 when the scenario needs an API kafkajs does not have (after every earlier step held).
// Progress ("ok: ..." per check) goes to stdout.
//
// --closest: kafkajs cannot express two steps of the contract (see scenarios.js): interleaved header names
// (produce-headers-nulls) and a consumer without a group (consume-offsets). Without the flag those steps fail the
// scenario, saying so; with it the peer does the closest thing kafkajs can, says so on stdout, and checks the rest.

const deps = require('./deps')
const { CheckFailed, ClientLacksApi, progress } = require('./checks')

const USAGE = 'usage: peer.js --bootstrap HOST:PORT --scenario NAME --prefix PREFIX [--closest] | --version'

function parseArgs (argv) {
  const opts = { closest: false }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--closest' || arg === '--version') {
      opts[arg.slice(2)] = true
    } else if (['--bootstrap', '--scenario', '--prefix'].includes(arg) && i + 1 < argv.length) {
      opts[arg.slice(2)] = argv[++i]
    } else {
      throw new CheckFailed(`unexpected argument ${JSON.stringify(arg)}\n${USAGE}`)
    }
  }
  if (!opts.version && !(opts.bootstrap && opts.scenario && opts.prefix)) {
    throw new CheckFailed(`--bootstrap, --scenario and --prefix are required\n${USAGE}`)
  }
  return opts
}

// The contract's last resort: the pytest side kills the peer at 120 s; finish (and say where it hung) by 90 s.
const OVERALL_DEADLINE_MS = 90_000

async function main () {
  const opts = parseArgs(process.argv.slice(2))
  const { kafkajs, versions } = await deps.load()
  if (opts.version) {
    console.log(versions.kafkajs)
    return
  }
  const { SCENARIOS } = require('./scenarios')
  const scenario = SCENARIOS[opts.scenario]
  if (!scenario) {
    const known = Object.keys(SCENARIOS).join(', ')
    throw new CheckFailed(`unknown scenario ${JSON.stringify(opts.scenario)}; known: ${known}`)
  }
  const watchdog = setTimeout(() => {
    console.error(`scenario ${opts.scenario} did not finish within ${OVERALL_DEADLINE_MS / 1000} s`)
    process.exit(2)
  }, OVERALL_DEADLINE_MS)
  watchdog.unref()
  progress(`kafkajs ${versions.kafkajs}: scenario ${opts.scenario}, prefix ${opts.prefix}, bootstrap ${opts.bootstrap}`)
  await scenario({ kafkajs, ...opts })
  progress(`scenario ${opts.scenario}: every check held`)
}

main().then(
  // kafkajs may leave sockets or timers behind after disconnect(); the scenario is over, so do not wait for them.
  () => process.exit(0),
  err => {
    if (err instanceof ClientLacksApi) {
      console.error(`UNSUPPORTED: ${err.message}`)
      process.exit(3)
    } else if (err instanceof CheckFailed) {
      console.error(`FAILED: ${err.message}`)
    } else {
      // kafkajs errors' stacks include their "Caused by" chain.
      console.error(`FAILED with an unexpected error: ${err && err.stack ? err.stack : err}`)
    }
    process.exit(1)
  }
)
