// Discovers remote signers the way nostr-tools does (NIP-46 appendix):
// `fetchBunkerProviders` reads kind:31990 announcements with k=24133 from a
// relay, then checks each author against the `nostr.json` of the domain in
// its content. Usage:
//   node nostr-tools-discover.mjs RELAY_URL DOMAIN DASHBOARD_ORIGIN
// HTTPS requests for DOMAIN are sent to DASHBOARD_ORIGIN (plain HTTP on
// loopback): the test has no certificate, everything else is nostr-tools'.
// Prints the providers found as one JSON array on stdout.
import { fetchBunkerProviders, useFetchImplementation } from 'nostr-tools/nip46'
import { SimplePool, useWebSocketImplementation } from 'nostr-tools/pool'
import WebSocket from 'ws'

useWebSocketImplementation(WebSocket)

const [relay, domain, origin] = process.argv.slice(2)
useFetchImplementation((url, init) => {
  const local = String(url).replace(`https://${domain}`, origin)
  return fetch(local, init)
})

const pool = new SimplePool()
const providers = await Promise.race([
  fetchBunkerProviders(pool, [relay]),
  new Promise((_, reject) => setTimeout(() => reject(new Error('timed out')), 15000)),
])
console.log(JSON.stringify(providers))
pool.close([relay])
process.exit(0)
