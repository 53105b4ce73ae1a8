// Logs in to a bunker with NDK's NDKNip46Signer (a real, widely used NIP-46
// client) and exercises it. Usage: node ndk-bunker.mjs 'bunker://…'
// Prints one JSON object on stdout; exits non-zero on any failure.
import WebSocket from 'ws'
import { check, within } from './util.mjs'
// NDK uses the global WebSocket, which Node 20 does not have.
globalThis.WebSocket = WebSocket

const { default: NDK, NDKEvent, NDKNip46Signer, NDKPrivateKeySigner, NDKUser } = await import('@nostr-dev-kit/ndk')
const { generateSecretKey, getPublicKey, verifyEvent } = await import('nostr-tools/pure')
const nip44 = await import('nostr-tools/nip44')
const nip04 = await import('nostr-tools/nip04')


async function main() {
  const uri = process.argv[2]
  const relays = new URL(uri).searchParams.getAll('relay')
  const ndk = new NDK({ explicitRelayUrls: relays })
  await within(10000, ndk.connect(5000), 'relays')
  const signer = NDKNip46Signer.bunker(ndk, uri, NDKPrivateKeySigner.generate())
  const user = await within(15000, signer.blockUntilReady(), 'connect')
  const pubkey = user.pubkey
  check(/^[0-9a-f]{64}$/.test(pubkey), 'pubkey is hex')

  ndk.signer = signer
  const note = new NDKEvent(ndk, { kind: 1, content: 'hello from NDK', tags: [['t', 'rampart']] })
  await within(10000, note.sign(signer), 'sign_event')
  const event = note.rawEvent()
  check(verifyEvent(event), 'signature verifies')
  check(event.pubkey === pubkey, 'signed by the user key')

  const peer = generateSecretKey()
  const peerUser = new NDKUser({ pubkey: getPublicKey(peer) })
  const ct44 = await within(10000, signer.encrypt(peerUser, 'secret message', 'nip44'), 'nip44_encrypt')
  check(nip44.decrypt(ct44, nip44.getConversationKey(peer, pubkey)) === 'secret message', 'peer reads nip44 ciphertext')
  const fromPeer = nip44.encrypt('reply from peer', nip44.getConversationKey(peer, pubkey))
  check((await within(10000, signer.decrypt(peerUser, fromPeer, 'nip44'), 'nip44_decrypt')) === 'reply from peer', 'nip44_decrypt')
  const ct04 = await within(10000, signer.encrypt(peerUser, 'legacy', 'nip04'), 'nip04_encrypt')
  check((await nip04.decrypt(peer, pubkey, ct04)) === 'legacy', 'peer reads nip04 ciphertext')

  console.log(JSON.stringify({ pubkey, event, ok: true }))
  process.exit(0)
}

main().catch((err) => {
  console.error(String(err && err.stack ? err.stack : err))
  process.exit(1)
})
