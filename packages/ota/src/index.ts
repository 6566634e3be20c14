// devicescript-github-ota: over-the-air updates of an ESP32-S3 DeviceScript device from
// a GitHub repository's releases, through the OTA updater service (services/otaupdater.md).
//
//   import { startOta } from "devicescript-github-ota"
//   const ota = startOta()          // settings from .env.defaults / .env.local
//   ota.status.subscribe(s => console.log(s.event))
//
// The low-level pieces are exported for reuse: the HTTP/1.1 client, the streaming JSON
// parser, semver, the GitHub release lookup and the OTA service client.
export { startOta, OtaUpdate, OtaValue, OtaOptions, OtaEvent, DEFAULT_WRITE_RATE } from "./ota"
export { request, HttpResponse, RequestOptions, RequestError, DEFAULT_TIMEOUTS, closeIdle } from "./http"
export { JsonStream, JsonStreamOptions, JsonScalar } from "./jsonstream"
export { parseSemver, compareSemver, isNewer, SemVer } from "./semver"
export { globMatch } from "./glob"
export { GithubReleases, GithubConfig, GithubError, Release, ReleaseAsset, Channel } from "./github"
export { OtaClient, OtaError, OtaStatus, ImageWriter, writePolicy } from "./otaclient"
export { Updater, ReleaseError } from "./updater"
export { STATUS_PREFIX } from "./status"
