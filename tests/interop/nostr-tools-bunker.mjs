// Logs in to a bunker with nostr-tools' BunkerSigner (a real, widely used
// NIP-46 client) and exercises it. Usage: node nostr-tools-bunker.mjs 'bunker://…'
// Prints one JSON object on stdout; exits non-zero on any failure.
import { BunkerSigner, parseBunkerInput } from 'nostr-tools/nip46'
import { generateSecretKey, getPublicKey, verifyEvent } from 'nostr-tools/pure'
import { SimplePool, useWebSocketImplementation } from 'nostr-tools/pool'
import * as nip44 from 'nostr-tools/nip44'
import * as nip04 from 'nostr-tools/nip04'
import WebSocket from 'ws'
import { check, within } from './util.mjs'

useWebSocketImplementation(WebSocket)


async function main() {
  const uri = process.argv[2]
  const bp = await parseBunkerInput(uri)
  check(bp, 'bunker URI parses')
  const pool = new SimplePool()
  const signer = BunkerSigner.fromBunker(generateSecretKey(), bp, { pool })
  await within(10000, signer.connect({ name: 'nostr-tools interop', url: 'https://interop.example' }), 'connect')
  const pubkey = await within(10000, signer.getPublicKey(), 'get_public_key')
  check(/^[0-9a-f]{64}$/.test(pubkey), 'pubkey is hex')
  check(pubkey !== bp.pubkey, 'user pubkey differs from the signer pubkey')

  const createdAt = Math.floor(Date.now() / 1000)
  const event = await within(10000, signer.signEvent({ kind: 1, content: 'hello from nostr-tools', tags: [['t', 'rampart']], created_at: createdAt }), 'sign_event')
  check(verifyEvent(event), 'signature verifies')
  check(event.pubkey === pubkey, 'signed by the user key')
  check(event.content === 'hello from nostr-tools' && event.created_at === createdAt, 'template preserved')

  const peer = generateSecretKey()
  const peerPub = getPublicKey(peer)
  const ct44 = await within(10000, signer.nip44Encrypt(peerPub, 'secret message'), 'nip44_encrypt')
  check(nip44.decrypt(ct44, nip44.getConversationKey(peer, pubkey)) === 'secret message', 'peer reads nip44 ciphertext')
  const fromPeer = nip44.encrypt('reply from peer', nip44.getConversationKey(peer, pubkey))
  check((await within(10000, signer.nip44Decrypt(peerPub, fromPeer), 'nip44_decrypt')) === 'reply from peer', 'nip44_decrypt')

  const ct04 = await within(10000, signer.nip04Encrypt(peerPub, 'legacy'), 'nip04_encrypt')
  check((await nip04.decrypt(peer, pubkey, ct04)) === 'legacy', 'peer reads nip04 ciphertext')

  await within(10000, signer.ping(), 'ping')
  const switched = await within(10000, signer.switchRelays(), 'switch_relays')

  console.log(JSON.stringify({ pubkey, event, switched, ok: true }))
  await signer.close()
  pool.destroy()
  process.exit(0)
}

main().catch((err) => {
  console.error(String(err && err.stack ? err.stack : err))
  process.exit(1)
})
