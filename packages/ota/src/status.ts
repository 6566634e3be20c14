// Machine-readable status lines of the device program: the prefix, then one JSON object
// with an `event` field. Read by the simulator (sim/device-sim.ts) and by people watching
// the console; no imports, so that host code can import it too.

/** Every status line starts with this. */
export const STATUS_PREFIX = "ota-status "
