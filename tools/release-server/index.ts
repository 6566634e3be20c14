/**
 * GitHub release emulator: an API origin (like api.github.com) and a separate storage
 * origin (like release-assets.githubusercontent.com) on loopback, with a declarative
 * fault plan. Public API of the folder; the CLI is cli.ts.
 *
 *   store.ts    release folders on disk        shapes.ts  GitHub JSON shapes
 *   api.ts      API origin                      storage.ts signed URLs, Range
 *   faults.ts   fault plan, framing, sending    http-wire.ts raw HTTP/1.1 on net sockets
 *   context.ts  shared state and types          server.ts  startReleaseServer
 */
export { startReleaseServer } from "./server"
export { writeRelease, listRepos } from "./store"
export type { WriteReleaseOptions } from "./store"
export type { ReleaseServer, ReleaseServerOptions, RequestRecord, ServerStats, Origin } from "./context"
export type { FaultPlan, Faults } from "./faults"
