// `npm run watch`: prints the OTA updater's registers as any client of devtools' bus sees
// them (what the VS Code extension's device tree shows), for a terminal with no VS Code.
//
//   npx devicescript devtools    # terminal 1
//   npm run sim                  # terminal 2
//   npm run watch                # terminal 3: one line a second, and the service's events
import { createNodeSocketTransport, EVENT, JDBus, JDService } from "jacdac-ts"
import { OtaUpdaterEvent, OtaUpdaterReg, OtaUpdaterState, SRV_OTA_UPDATER } from "../.devicescript/ts/constants"
import { loadServiceSpecs } from "./device-sim"
import { DEVTOOLS_TCP_PORT, waitForListener } from "./devtools"

/** The registers the extension's device tree shows, read once. */
export interface OtaRegisters {
    t: number // performance.now() when read
    state: number // OtaUpdaterState
    progress: number // 0..1 (u0.16)
    throughput: number // B/s
    version: string
    pendingVerify: boolean
}

/** Reads the registers the way a client does: a GET for each (refresh). Throws on a timeout. */
export async function readOtaRegisters(ota: JDService): Promise<OtaRegisters> {
    const read = async (code: number) => {
        const r = ota.register(code)
        await r.refresh()
        return r
    }
    return {
        t: performance.now(),
        state: (await read(OtaUpdaterReg.State)).uintValue,
        progress: (await read(OtaUpdaterReg.Progress)).unpackedValue[0],
        throughput: (await read(OtaUpdaterReg.Throughput)).uintValue,
        version: (await read(OtaUpdaterReg.RunningVersion)).stringValue,
        pendingVerify: (await read(OtaUpdaterReg.PendingVerify)).boolValue,
    }
}

/** A jacdac-ts client on devtools' TCP bus (no role manager: it only watches). */
export async function devtoolsClient(): Promise<JDBus> {
    const bus = new JDBus([createNodeSocketTransport(DEVTOOLS_TCP_PORT, "127.0.0.1")], {
        services: loadServiceSpecs(),
        disableRoleManager: true,
    })
    await bus.connect(true)
    return bus
}

async function main() {
    console.log(`watch: waiting for devtools on tcp://127.0.0.1:${DEVTOOLS_TCP_PORT}`)
    await waitForListener(DEVTOOLS_TCP_PORT)
    const bus = await devtoolsClient()
    let watched: JDService | undefined
    for (;;) {
        const ota = bus.services({ serviceClass: SRV_OTA_UPDATER })[0]
        if (ota && ota !== watched) {
            watched = ota
            console.log(`watch: OTA updater on device ${ota.device.shortId}`)
            ota.event(OtaUpdaterEvent.Ready).on(EVENT, () => console.log("watch: event ready"))
            ota.event(OtaUpdaterEvent.Failed).on(EVENT, () => console.log("watch: event failed"))
        }
        if (ota) {
            const r = await readOtaRegisters(ota).catch(() => undefined)
            if (r)
                console.log(
                    `state ${OtaUpdaterState[r.state] ?? r.state}, progress ${(r.progress * 100).toFixed(0)}%, ` +
                        `throughput ${r.throughput} B/s, running_version ${r.version}, pending_verify ${r.pendingVerify}`,
                )
        }
        await new Promise(r => setTimeout(r, 1000))
    }
}

if (require.main === module)
    main().catch(e => {
        console.error(`watch: ${(e as Error).message}`)
        process.exit(1)
    })
