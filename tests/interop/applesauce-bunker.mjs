// Logs in to a bunker with applesauce-signers' NostrConnectSigner (the client
// side of applesauce) and exercises it. Usage: node applesauce-bunker.mjs 'bunker://…'
// Prints one JSON object on stdout; exits non-zero on any failure.
import { NostrConnectSigner } from 'applesauce-signers'
import { SimplePool, useWebSocketImplementation } from 'nostr-tools/pool'
import { generateSecretKey, getPublicKey, verifyEvent } from 'nostr-tools/pure'
import * as nip44 from 'nostr-tools/nip44'
import * as nip04 from 'nostr-tools/nip04'
import { Observable } from 'rxjs'
import WebSocket from 'ws'
import { check, within } from './util.mjs'

useWebSocketImplementation(WebSocket)


async function main() {
  const uri = process.argv[2]
  const pool = new SimplePool()
  const subscriptionMethod = (relays, filters) =>
    new Observable((subscriber) => {
      const closers = filters.map((filter) =>
        pool.subscribeMany(relays, filter, { onevent: (event) => subscriber.next(event) }),
      )
      return () => closers.forEach((c) => c.close())
    })
  // Never wait for OK: some relays send none for ephemeral kinds.
  const publishMethod = async (relays, event) => {
    pool.publish(relays, event).forEach((p) => p.catch(() => {}))
  }
  const signer = await within(
    15000,
    NostrConnectSigner.fromBunkerURI(uri, { subscriptionMethod, publishMethod }),
    'connect',
  )
  const pubkey = await within(10000, signer.getPublicKey(), 'get_public_key')
  check(/^[0-9a-f]{64}$/.test(pubkey), 'pubkey is hex')

  const createdAt = Math.floor(Date.now() / 1000)
  const event = await within(10000, signer.signEvent({ kind: 1, content: 'hello from applesauce', tags: [['t', 'rampart']], created_at: createdAt }), 'sign_event')
  check(verifyEvent(event), 'signature verifies')
  check(event.pubkey === pubkey, 'signed by the user key')

  const peer = generateSecretKey()
  const peerPub = getPublicKey(peer)
  const ct44 = await within(10000, signer.nip44.encrypt(peerPub, 'secret message'), 'nip44_encrypt')
  check(nip44.decrypt(ct44, nip44.getConversationKey(peer, pubkey)) === 'secret message', 'peer reads nip44 ciphertext')
  const fromPeer = nip44.encrypt('reply from peer', nip44.getConversationKey(peer, pubkey))
  check((await within(10000, signer.nip44.decrypt(peerPub, fromPeer), 'nip44_decrypt')) === 'reply from peer', 'nip44_decrypt')
  const ct04 = await within(10000, signer.nip04.encrypt(peerPub, 'legacy'), 'nip04_encrypt')
  check((await nip04.decrypt(peer, pubkey, ct04)) === 'legacy', 'peer reads nip04 ciphertext')

  console.log(JSON.stringify({ pubkey, event, ok: true }))
  await signer.close()
  pool.destroy()
  process.exit(0)
}

main().catch((err) => {
  console.error(String(err && err.stack ? err.stack : err))
  process.exit(1)
})
