// The Node options netplumbd runs with: its own `#!` line carries them (so the installed program and the systemd
// unit, which runs it, get them), and whatever starts it as `node main.js` (tests, bench, demo) passes these.
//
// --initial-old-space-size: on a bulk transfer the daemon's heap holds about 8 MB, so V8's first old-generation
// limit is about 14 MB, and the packet buffers that a scavenge finds still queued (promoted with their external
// memory) reach it every 70 ms or so: 31 full collections per GiB sent, about a fifth of the daemon's CPU. With a
// first limit of 64 MB, 1 GiB passed with none, at the same peak RSS (107 MB against 106 MB here).
export const NETPLUMBD_NODE_OPTIONS: readonly string[] = Object.freeze(['--initial-old-space-size=64']);
