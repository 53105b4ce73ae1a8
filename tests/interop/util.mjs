// Helpers shared by the client scripts: bounded waits and checks that fail
// the script with a message saying what did not hold.
export const within = (ms, promise, what) =>
  Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)),
  ])

export const check = (cond, what) => {
  if (!cond) throw new Error(`check failed: ${what}`)
}
