'use strict'
// Loads kafkajs and its codec plugins from where install.sh put them ($SPOOL_PEERS_DIR/js-peer/node_modules, kept
// out of the repo tree) and registers the codecs kafkajs does not have built in (it only has gzip).
//   node deps.js --versions     prints the installed versions (install.sh's smoke test)

const fs = require('fs')
const path = require('path')
const { createRequire } = require('module')
const { pathToFileURL } = require('url')

const PEERS_DIR = process.env.SPOOL_PEERS_DIR || path.resolve(__dirname, '..', '..', '..', '.peers')
const INSTALL_DIR = path.join(PEERS_DIR, 'js-peer')
// Resolves modules as if from a file in INSTALL_DIR, i.e. from INSTALL_DIR/node_modules.
const requireInstalled = createRequire(path.join(INSTALL_DIR, 'package.json'))

const CODEC_PLUGINS = ['kafkajs-snappy', 'kafkajs-lz4', '@sensejs/kafkajs-zstd-support']
const CODECS = ['GZIP', 'Snappy', 'LZ4', 'ZSTD']

function installedPackageJson (name) {
  // Read from disk: some packages' "exports" do not export ./package.json.
  const file = path.join(INSTALL_DIR, 'node_modules', name, 'package.json')
  return JSON.parse(fs.readFileSync(file, 'utf8'))
}

/** kafkajs with every codec registered, and the installed versions. */
async function load () {
  let kafkajs
  try {
    kafkajs = requireInstalled('kafkajs')
  } catch (err) {
    throw new Error(`kafkajs is not installed under ${INSTALL_DIR} (run interop/peers/js/install.sh): ${err.message}`)
  }
  const { CompressionCodecs, CompressionTypes } = kafkajs

  // snappy and lz4: the plugins the kafkajs documentation points to.
  const SnappyCodec = requireInstalled('kafkajs-snappy')
  const LZ4Codec = requireInstalled('kafkajs-lz4')
  CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
  CompressionCodecs[CompressionTypes.LZ4] = new LZ4Codec().codec

  // zstd: @kafkajs/zstd (the plugin the kafkajs documentation points to) does not build on Node 20 (its native
  // dependency cppzst 2.0.6 fails to compile against Node 20's V8 headers), so it comes from
  // @sensejs/kafkajs-zstd-support (zstd-napi). Its CommonJS build is broken (it calls tslib helpers it never
  // imports: "__importDefault is not defined"), so load its ES module build, which registers the codec on
  // import('kafkajs'): the same kafkajs instance as ours (both resolve to INSTALL_DIR/node_modules/kafkajs).
  const zstdName = '@sensejs/kafkajs-zstd-support'
  const zstdEntry = path.join(INSTALL_DIR, 'node_modules', zstdName, installedPackageJson(zstdName).exports.import)
  await import(pathToFileURL(zstdEntry).href)

  for (const type of CODECS) {
    if (typeof CompressionCodecs[CompressionTypes[type]] !== 'function') {
      throw new Error(`no ${type} codec registered with kafkajs`)
    }
  }
  const versions = { kafkajs: installedPackageJson('kafkajs').version }
  for (const name of CODEC_PLUGINS) versions[name] = installedPackageJson(name).version
  return { kafkajs, versions }
}

/** Compresses and decompresses a buffer with every codec: a native addon that built but does not work fails. */
async function checkCodecs (kafkajs) {
  const { CompressionCodecs, CompressionTypes } = kafkajs
  for (const type of CODECS) {
    const codec = CompressionCodecs[CompressionTypes[type]]()
    const input = Buffer.from(`spool interop ${type} `.repeat(50))
    const output = await codec.decompress(await codec.compress({ buffer: input }))
    if (!input.equals(Buffer.from(output))) throw new Error(`${type} codec round trip changed the data`)
  }
}

module.exports = { load, INSTALL_DIR }

if (require.main === module && process.argv.includes('--versions')) {
  load()
    .then(async ({ kafkajs, versions }) => {
      await checkCodecs(kafkajs)
      console.log(`kafkajs ${versions.kafkajs} (gzip built in)`)
      for (const name of CODEC_PLUGINS) console.log(`${name} ${versions[name]}`)
    })
    .catch(err => {
      console.error(`js peer dependencies do not load: ${err.stack || err}`)
      process.exit(1)
    })
}
