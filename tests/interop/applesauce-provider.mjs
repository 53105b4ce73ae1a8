// A third-party NIP-46 remote signer for interop tests: applesauce-signers'
// NostrConnectProvider, approving everything, over nostr-tools' SimplePool.
//
// Usage: node applesauce-provider.mjs --relay ws://… [--relay …] [--secret S]
//            [--switch-to ws://…] [--nostrconnect nostrconnect://…]
//
// Prints its bunker:// URI on stdout once its subscription is live (the
// relay sent EOSE), then serves until killed or until its stdin closes (so a
// test that dies leaves no process behind). The identity key and the user
// key differ, so clients must call get_public_key. With --switch-to, it
// answers switch_relays with that relay list (it listens on every --relay).
// With --nostrconnect, it first answers that client URI (as a user pasting
// it into the signer would).
import { NostrConnectProvider, PrivateKeySigner } from 'applesauce-signers'
import { SimplePool, useWebSocketImplementation } from 'nostr-tools/pool'
import { Observable } from 'rxjs'
import WebSocket from 'ws'

useWebSocketImplementation(WebSocket)

function parseArgs(argv) {
  const args = { relays: [], switchTo: [], secret: undefined, nostrconnect: undefined }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]
    const value = argv[++i]
    if (value === undefined) throw new Error(`${flag} needs a value`)
    if (flag === '--relay') args.relays.push(value)
    else if (flag === '--switch-to') args.switchTo.push(value)
    else if (flag === '--secret') args.secret = value
    else if (flag === '--nostrconnect') args.nostrconnect = value
    else throw new Error(`unknown argument ${flag}`)
  }
  if (args.relays.length === 0) throw new Error('give at least one --relay')
  return args
}

async function main() {
  const args = parseArgs(process.argv.slice(2))
  const pool = new SimplePool()
  let live
  const subscribed = new Promise((resolve) => (live = resolve))

  const subscriptionMethod = (relays, filters) =>
    new Observable((subscriber) => {
      const closers = filters.map((filter) =>
        pool.subscribeMany(relays, filter, {
          onevent: (event) => subscriber.next(event),
          oneose: () => live(),
        }),
      )
      return () => closers.forEach((c) => c.close())
    })
  const publishMethod = (relays, event) => Promise.any(pool.publish(relays, event))

  const user = new PrivateKeySigner()
  const provider = new NostrConnectProvider({
    relays: args.relays,
    upstream: user,
    signer: new PrivateKeySigner(),
    bunkerSecret: args.secret,
    subscriptionMethod,
    publishMethod,
    onSwitchRelays: async () => (args.switchTo.length ? args.switchTo : null),
  })
  await provider.start(args.nostrconnect)
  await Promise.race([
    subscribed,
    new Promise((_, reject) => setTimeout(() => reject(new Error('no EOSE within 20 s')), 20000)),
  ])
  process.stdout.write(`${await provider.getBunkerURI()}\n`)
  process.stderr.write(`applesauce-provider: serving user ${await user.getPublicKey()}\n`)

  const stop = async () => {
    await provider.stop()
    pool.destroy()
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  process.stdin.on('end', stop)
  process.stdin.resume()
}

main().catch((e) => {
  process.stderr.write(`applesauce-provider: ${e.message}\n`)
  process.exit(1)
})
